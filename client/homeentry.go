package client

import (
	"time"

	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// Entry is the home relay's transport EntryHandler: client from asks it
// to send pkt to next, the first hop of the packet's route. The home
// forwards at once, without delay and without waiting, when from is a
// registered, connected client within its rate and next is a relay of the
// first stratum of the current or previous epoch; otherwise it drops the
// packet and counts why (entry_unregistered, entry_rate, entry_route,
// entry_full). pkt is borrowed for the call.
func (h *Home) Entry(from, next transport.NodeID, pkt []byte) {
	id := sphinx.NodeID(from)
	h.mu.Lock()
	c := h.clients[id]
	if c == nil {
		h.mu.Unlock()
		h.m.drop(dropEntryUnregistered)
		return
	}
	if !c.bucket.take(h.now()) {
		c.dropped++
		h.mu.Unlock()
		h.m.drop(dropEntryRate)
		return
	}
	if _, ok := h.first[sphinx.NodeID(next)]; !ok {
		c.dropped++
		h.mu.Unlock()
		h.m.drop(dropEntryRoute)
		return
	}
	c.forwarded++ // optimistic; undone below if the link refuses
	h.mu.Unlock()
	var err error
	if sphinx.NodeID(next) == h.self {
		err = h.inject(pkt)
	} else {
		err = h.host.TrySend(next, pkt)
	}
	if err != nil {
		h.mu.Lock()
		c.forwarded--
		c.dropped++
		h.mu.Unlock()
		h.m.drop(dropEntryFull)
		h.log.Debug("entry packet dropped", "client", from, "next", next, "err", err)
		return
	}
	h.m.entries.Inc()
}

// entryCounts returns the entry frames of client id forwarded and dropped
// since it registered (tests).
func (h *Home) entryCounts(id sphinx.NodeID) (forwarded, dropped uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.clients[id]; c != nil {
		return c.forwarded, c.dropped
	}
	return 0, 0
}

// tokenBucket limits one client's entry frames: rate tokens per second up
// to depth; a frame takes one.
type tokenBucket struct {
	rate, depth, level float64
	last               time.Time
}

// take reports whether a frame at now fits, and takes its token.
func (b *tokenBucket) take(now time.Time) bool {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.level = min(b.depth, b.level+dt*b.rate)
		b.last = now
	}
	if b.level < 1 {
		return false
	}
	b.level--
	return true
}
