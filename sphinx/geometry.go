package sphinx

import "fmt"

// Fixed element sizes of the format. Only the number of hops and the payload
// size vary between geometries; see [Geometry].
const (
	// GroupElementSize is the size of the X25519 group element α at the
	// start of every header.
	GroupElementSize = 32
	// MACSize is the size of a header MAC γ.
	MACSize = 16
	// CommandSize is the size of an encoded routing command: one kind byte
	// and a 32-byte argument.
	CommandSize = 1 + commandArgSize
	// RoutingInfoSize is the size of one hop's slot in the routing
	// information β: its command followed by the next hop's MAC.
	RoutingInfoSize = CommandSize + MACSize
	// PayloadTagSize is the number of zero bytes that open a payload's
	// plaintext; a destination that finds them altered knows the payload
	// was tampered with.
	PayloadTagSize = 16
	// NodeIDSize is the size of a node id.
	NodeIDSize = 32
	// SURBIDSize is the size of a SURB id.
	SURBIDSize = 16
	// DeliveryTokenSize is the size of a delivery token.
	DeliveryTokenSize = 16
	// ReplayTagSize is the size of a replay tag.
	ReplayTagSize = 32
	// KeySize is the size of X25519 private and public keys.
	KeySize = 32
	// SURBKeySize is the size of the key a SURB carries for its replier.
	SURBKeySize = 32

	// MaxHopsLimit bounds Geometry.MaxHops so that per-call scratch space
	// stays small and on the stack.
	MaxHopsLimit = 16
	// MinPayloadSize is the smallest payload a geometry may have: the
	// Lioness halves need 32 bytes each.
	MinPayloadSize = 2 * lionessKeySize
	// MaxPayloadSize bounds Geometry.PayloadSize.
	MaxPayloadSize = 1 << 20
)

// Geometry fixes the shape of a packet class. Every size of the format derives
// from it. All packets of a network share one geometry; packets of different
// geometries are not interchangeable.
type Geometry struct {
	// MaxHops is the number of hop slots in a header: the longest path a
	// packet can take, final hop included. Shorter paths are padded so that
	// every header has the same size.
	MaxHops int
	// PayloadSize is the size in bytes of the encrypted payload, tag
	// included.
	PayloadSize int
}

// DefaultGeometry returns Strata's single packet class: 5 hops (3 mix layers,
// a final hop and a spare) and a 2048-byte payload, 2341 bytes a packet.
func DefaultGeometry() Geometry {
	return Geometry{MaxHops: 5, PayloadSize: 2048}
}

// Validate reports whether g describes a usable geometry.
func (g Geometry) Validate() error {
	if g.MaxHops < 1 || g.MaxHops > MaxHopsLimit {
		return fmt.Errorf("sphinx: geometry: MaxHops %d out of range [1, %d]", g.MaxHops, MaxHopsLimit)
	}
	if g.PayloadSize < MinPayloadSize || g.PayloadSize > MaxPayloadSize {
		return fmt.Errorf("sphinx: geometry: PayloadSize %d out of range [%d, %d]", g.PayloadSize, MinPayloadSize, MaxPayloadSize)
	}
	return nil
}

// RoutingSize is the size of the routing information β of a header.
func (g Geometry) RoutingSize() int { return g.MaxHops * RoutingInfoSize }

// HeaderSize is the size of a header: α, β and γ.
func (g Geometry) HeaderSize() int { return GroupElementSize + g.RoutingSize() + MACSize }

// PacketSize is the size of a packet on the wire: header and payload.
func (g Geometry) PacketSize() int { return g.HeaderSize() + g.PayloadSize }

// PayloadCapacity is the number of message bytes a packet carries end to end:
// the payload less its tag.
func (g Geometry) PayloadCapacity() int { return g.PayloadSize - PayloadTagSize }

// SURBSize is the size of an encoded SURB: first hop, header and reply key.
func (g Geometry) SURBSize() int { return NodeIDSize + g.HeaderSize() + SURBKeySize }

// SURBKeysSize is the largest size of the keys a SURB's creator keeps to
// open the reply (see [Format.NewSURB]).
func (g Geometry) SURBKeysSize() int { return surbKeysSize(g.MaxHops) }

// String returns a short description such as "5 hops, 2048 B payload, 2341 B packet".
func (g Geometry) String() string {
	return fmt.Sprintf("%d hops, %d B payload, %d B packet", g.MaxHops, g.PayloadSize, g.PacketSize())
}
