package relay

import (
	"errors"

	"github.com/strata-mix/strata/sphinx"
)

// forward sends a packet whose delay has passed; the scheduler calls it.
func (r *Relay) forward(next sphinx.NodeID, b *[]byte) { r.send(next, b) }

// forwardNow sends a packet with no delay left from the replay stage (the
// dispatch goroutine). Like forward it never waits for the successor: a
// sender can grind packets whose delay here is near zero, and one waiting
// send to a successor that stopped reading would stall the dispatch
// goroutine, and with it the replay stage, the workers and every inbound
// stream. A full or dead successor loses the packet (counted), as a mix
// network may.
func (r *Relay) forwardNow(next sphinx.NodeID, b *[]byte) { r.send(next, b) }

// send hands a packet to the Link with a done context (Link never waits)
// and counts a failure by its reason.
func (r *Relay) send(next sphinx.NodeID, b *[]byte) {
	err := r.cfg.Link.Send(r.noWait, next, *b)
	r.putBuf(b)
	if err != nil {
		r.m.drop(sendReason(err))
		r.log.Debug("forward failed", "next", next, "err", err)
		return
	}
	r.m.out.Inc()
}

func sendReason(err error) string {
	switch {
	case errors.Is(err, ErrLinkFull), errors.Is(err, ErrBusy):
		return reasonPeerFull
	case errors.Is(err, ErrLinkDown):
		return reasonPeerDown
	case errors.Is(err, ErrRoute):
		return reasonRoute
	}
	return reasonSend
}
