package relay

import (
	"errors"

	"github.com/strata-mix/strata/sphinx"
)

// inbound is a received packet waiting for an unwrap worker.
type inbound struct {
	buf  *[]byte
	from sphinx.NodeID
	// slot is the sending peer's share of the pipeline (peerSlots), held
	// until the packet is dispatched or dropped; nil for Inject.
	slot chan struct{}
}

// HandlePacket takes a packet received from a peer (transport.Handler). A
// peer that may not send to this node (Config.Routes) has its packet
// dropped before anything else is spent on it. HandlePacket copies pkt, so
// the transport may reuse it, and queues it for a worker. It waits while
// the sending peer already has its share of the pipeline in flight
// (InboundQueue/8 packets between here and dispatch), or while the queue
// is full: the sending peer's stream feels the back-pressure, and one peer
// that floods the relay cannot fill the queue that every other peer's
// packets wait in.
func (r *Relay) HandlePacket(from sphinx.NodeID, pkt []byte) {
	r.m.in.Inc()
	if len(pkt) != r.cfg.Format.Geometry().PacketSize() {
		r.m.drop(reasonSize)
		return
	}
	if rp := r.cfg.Routes; rp != nil && !rp.MayReceive(from) {
		r.m.drop(reasonRouteFrom)
		return
	}
	slot := r.peerSlot(from)
	select {
	case slot <- struct{}{}:
	case <-r.ctx.Done():
		return
	}
	b := r.getBuf()
	copy(*b, pkt)
	select {
	case r.in <- inbound{buf: b, from: from, slot: slot}:
	case <-r.ctx.Done():
		r.putBuf(b)
		release(slot)
	}
}

// peerSlot returns from's share of the pipeline: a semaphore of
// InboundQueue/8 packets. Only peers the routes let send get one, so the
// table is bounded by the topology.
func (r *Relay) peerSlot(from sphinx.NodeID) chan struct{} {
	r.slotMu.RLock()
	s := r.slots[from]
	r.slotMu.RUnlock()
	if s != nil {
		return s
	}
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	if s = r.slots[from]; s == nil {
		s = make(chan struct{}, max(1, r.cfg.InboundQueue/8))
		r.slots[from] = s
	}
	return s
}

// release returns a packet's pipeline slot to its peer.
func release(slot chan struct{}) {
	if slot != nil {
		<-slot
	}
}

// ErrBusy means the relay's inbound queue is full.
var ErrBusy = errors.New("relay: inbound queue full")

// Inject hands the relay a packet addressed to itself (a loop whose route
// passes through its own stratum, or a home relay's client packet whose
// first hop is this relay) without waiting: it returns ErrBusy when the
// inbound queue is full, since waiting could deadlock a relay sending to
// itself. The packet comes from this node (RoutePolicy.Self). Injected
// packets have their own queue, served before the peers' (HandlePacket),
// so a peer that floods the relay cannot make Inject fail.
func (r *Relay) Inject(pkt []byte) error {
	if len(pkt) != r.cfg.Format.Geometry().PacketSize() {
		r.m.drop(reasonSize)
		return ErrBusy
	}
	var from sphinx.NodeID
	if rp := r.cfg.Routes; rp != nil {
		from = rp.Self()
	}
	b := r.getBuf()
	copy(*b, pkt)
	select {
	case r.local <- inbound{buf: b, from: from}:
		r.m.in.Inc()
		return nil
	default:
		r.putBuf(b)
		return ErrBusy
	}
}
