package relay

import (
	"context"

	"github.com/strata-mix/strata/sphinx"
)

// forward sends a packet whose delay has passed; the scheduler calls it. It
// must not wait for a slow successor, which would hold up every other
// packet due, so it sends with a context that is already done: a full
// successor queue drops the packet (counted), as a mix network may.
func (r *Relay) forward(next sphinx.NodeID, b *[]byte) { r.send(r.noWait, next, b) }

// forwardNow sends a packet with no delay left from the replay stage. It
// waits while the successor's queue is full, so an overloaded successor
// slows this relay's intake down (back-pressure to the previous hop)
// instead of losing packets. With a delay policy's mean above zero, packets
// almost never take this path.
func (r *Relay) forwardNow(next sphinx.NodeID, b *[]byte) { r.send(r.ctx, next, b) }

func (r *Relay) send(ctx context.Context, next sphinx.NodeID, b *[]byte) {
	err := r.cfg.Link.Send(ctx, next, *b)
	r.putBuf(b)
	if err != nil {
		r.m.drop(reasonSend)
		r.log.Debug("forward failed", "next", next, "err", err)
		return
	}
	r.m.out.Inc()
}
