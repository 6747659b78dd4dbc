package relay

import "github.com/strata-mix/strata/sphinx"

// HandlePacket takes a packet received from a peer (transport.Handler). It
// copies pkt, so the transport may reuse it, and queues it for a worker,
// waiting while the queue is full: the sending peer feels the back-pressure,
// other peers do not.
func (r *Relay) HandlePacket(from sphinx.NodeID, pkt []byte) {
	r.m.in.Inc()
	if len(pkt) != r.cfg.Format.Geometry().PacketSize() {
		r.m.drop(reasonSize)
		return
	}
	b := r.getBuf()
	copy(*b, pkt)
	select {
	case r.in <- b:
	case <-r.ctx.Done():
		r.putBuf(b)
	}
}
