package relay

import (
	"errors"

	"github.com/strata-mix/strata/sphinx"
)

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

// ErrBusy means the relay's inbound queue is full.
var ErrBusy = errors.New("relay: inbound queue full")

// Inject hands the relay a packet addressed to itself (a loop whose route
// passes through its own stratum) without waiting: it returns ErrBusy when
// the inbound queue is full, since waiting could deadlock a relay sending
// to itself.
func (r *Relay) Inject(pkt []byte) error {
	if len(pkt) != r.cfg.Format.Geometry().PacketSize() {
		r.m.drop(reasonSize)
		return ErrBusy
	}
	b := r.getBuf()
	copy(*b, pkt)
	select {
	case r.in <- b:
		r.m.in.Inc()
		return nil
	default:
		r.putBuf(b)
		return ErrBusy
	}
}
