package relay

import "github.com/strata-mix/strata/sphinx"

// forward sends a packet whose delay has passed. The Delayer calls it; the
// link copies the packet, so the buffer goes back to the pool at once.
func (r *Relay) forward(next sphinx.NodeID, b *[]byte) {
	err := r.cfg.Link.Send(r.ctx, next, *b)
	r.putBuf(b)
	if err != nil {
		r.m.drop(reasonSend)
		r.log.Debug("forward failed", "next", next, "err", err)
		return
	}
	r.m.out.Inc()
}
