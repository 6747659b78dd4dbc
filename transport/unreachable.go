package transport

import (
	"math"
	"time"
)

// A peer's reachability, peerState.retryAt: reachable (0), unreachable until
// a time (its Unix nanoseconds; sends fail until then), or probing (one
// packet was let through after that time and the sender is trying it).
const (
	reachable = 0
	probing   = math.MaxInt64
)

// admit decides whether a send to p may queue at now. probe is true for the
// one send let through, once the backoff has expired, to try the node again;
// further sends fail until that attempt has opened a stream.
func (p *peerState) admit(now time.Time) (ok, probe bool) {
	for {
		at := p.retryAt.Load()
		switch {
		case at == reachable:
			return true, false
		case at == probing || now.UnixNano() < at:
			return false, false
		case p.retryAt.CompareAndSwap(at, probing):
			return true, true
		}
	}
}

// unprobe lets the next send try again when the probe packet was not
// queued after all.
func (p *peerState) unprobe(probe bool) {
	if probe {
		p.retryAt.CompareAndSwap(probing, time.Now().UnixNano())
	}
}

// refusing reports whether a packet the sender took from the queue must be
// dropped because the node is unreachable and its backoff has not expired.
func (p *peerState) refusing(now time.Time) bool {
	at := p.retryAt.Load()
	return at != reachable && at != probing && now.UnixNano() < at
}

// setUnreachable refuses sends until the time t.
func (p *peerState) setUnreachable(t time.Time) { p.retryAt.Store(t.UnixNano()) }

// setReachable accepts sends again: a stream to the node is open, or the
// node connected to this host.
func (p *peerState) setReachable() { p.retryAt.Store(reachable) }
