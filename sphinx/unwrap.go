package sphinx

import (
	"fmt"
	"time"

	"github.com/cloudflare/circl/dh/x25519"
)

// Result is what a node learns from unwrapping one packet.
type Result struct {
	// Command is this hop's routing command.
	Command Command
	// Delay is how long to hold the packet before forwarding it; zero
	// unless Command is Forward.
	Delay time.Duration
	// ReplayTag identifies the packet for this node's key: the same packet
	// always yields the same tag, and distinct packets distinct tags. A
	// node must drop a packet whose tag it has seen under the same key.
	ReplayTag [ReplayTagSize]byte
	// Payload aliases the packet buffer. For DeliverMailbox and Loop it is
	// the message (PayloadCapacity bytes, zero padded); for DeliverClient
	// it is the whole payload, still encrypted for the SURB's creator (see
	// Format.OpenReply); for Forward and Drop it is nil.
	Payload []byte
}

// Unwrap processes pkt, a packet addressed to the node holding key, in place:
// it authenticates the header, decodes this hop's command and strips one
// layer of encryption. For a Forward command pkt then holds the packet to
// send to res.Command.NextHop() after res.Delay. delay is the network's delay
// policy.
//
// Unwrap allocates nothing on success and is safe for concurrent use. Errors
// wrap ErrPacketSize, ErrGroupElement, ErrMAC, ErrCommand or ErrPayloadTag;
// on the first three, pkt is unchanged, so a node holding keys of several
// epochs may try each in turn.
func (f *Format) Unwrap(key *PrivateKey, delay DelayPolicy, pkt []byte, res *Result) error {
	g := f.g
	if len(pkt) != g.PacketSize() {
		return fmt.Errorf("%w: %d bytes, want %d", ErrPacketSize, len(pkt), g.PacketSize())
	}
	sc := f.getScratch()
	defer f.putScratch(sc)

	B := g.RoutingSize()
	const R = RoutingInfoSize
	alpha := (*x25519.Key)(pkt[:GroupElementSize])
	beta := pkt[GroupElementSize : GroupElementSize+B]
	gamma := pkt[GroupElementSize+B : g.HeaderSize()]
	payload := pkt[g.HeaderSize():]

	if !x25519.Shared((*x25519.Key)(&sc.secret), (*x25519.Key)(key), alpha) {
		return ErrGroupElement
	}
	deriveHopKeys(&sc.secret, &sc.keys)
	headerMAC(sc.h, &sc.keys.mac, beta, &sc.sum)
	if !macEqual(sc.sum[:MACSize], gamma) {
		return ErrMAC
	}

	ks := sc.stream
	keyStream(&sc.keys.header, ks)
	var slot [R]byte
	subtleXOR(slot[:], beta, ks)
	if err := res.Command.decode(slot[:CommandSize]); err != nil {
		return err
	}
	res.ReplayTag = sc.keys.replay
	res.Delay = 0
	res.Payload = nil

	switch res.Command.Kind {
	case Forward:
		x25519.Shared(alpha, (*x25519.Key)(&sc.keys.blind), alpha)
		copy(beta, beta[R:])
		subtleXOR(beta[:B-R], beta[:B-R], ks[R:B])
		copy(beta[B-R:], ks[B:])
		copy(gamma, slot[CommandSize:])
		res.Delay = delay.Sample(sc.keys.delay)
		lionessDecrypt(sc.h, &sc.keys.lioness, payload, &sc.sum)
	case Drop:
	case DeliverClient:
		lionessDecrypt(sc.h, &sc.keys.lioness, payload, &sc.sum)
		res.Payload = payload
	default: // DeliverMailbox, Loop: this node is the destination.
		lionessDecrypt(sc.h, &sc.keys.lioness, payload, &sc.sum)
		if !isZero(payload[:PayloadTagSize]) {
			return ErrPayloadTag
		}
		res.Payload = payload[PayloadTagSize:]
	}
	return nil
}

// isZero reports whether b is all zeros, in time independent of its contents.
func isZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}
