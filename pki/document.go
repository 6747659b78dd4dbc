package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/strata-mix/strata/sphinx"
)

// NodeInfo is what a topology document says about a node: how to reach it
// and its mix key for the document's epoch.
type NodeInfo struct {
	ID          sphinx.NodeID
	IdentityKey [ed25519.PublicKeySize]byte
	Addrs       []string
	MixKey      sphinx.PublicKey
}

// Relay is a relay of an epoch's topology.
type Relay struct {
	NodeInfo
	// Layer is the relay's stratum, 0 first.
	Layer int
	// VRF is the relay's sort key: its verified VRF output on the
	// document's VRFBeacon or, when Withheld, WithheldKey(VRFBeacon, ID).
	VRF [VRFOutputSize]byte
	// Withheld marks a relay placed without a VRF output on VRFBeacon.
	Withheld bool
	// Next are the relays of layer Layer+1 this relay links to (empty in
	// the last layer); derived with NewGraph when the document is decoded.
	Next []sphinx.NodeID
}

// Topology is the chain's topology document for one epoch: the relays of
// each stratum with their links, the mailboxes, every node's mix key for
// the epoch, and the network parameters. It is a pure function of the
// chain's state at the moment the epoch's topology froze; its canonical
// encoding (docs/pki.md, "Topology document") is what the application
// hash commits to.
type Topology struct {
	ChainID string
	Epoch   uint64
	// Beacon is the epoch's beacon: NextBeacon(VRFBeacon, Epoch, the
	// relays placed by VRF output), or for epoch 0 the first block's hash.
	// It draws the links, and relays prove their VRFs on it during the
	// epoch.
	Beacon [32]byte
	// VRFBeacon is the beacon the relays' VRF outputs are on and their
	// withheld keys derive from: the previous epoch's beacon, or for epoch
	// 0 its own (equal to Beacon).
	VRFBeacon [32]byte
	Params    Params
	// Relays are in layer order, each layer in sort-key order. Empty when too
	// few relays were eligible to fill the layers.
	Relays []Relay
	// Mailboxes are in id order.
	Mailboxes []NodeInfo

	graph *Graph
	index map[sphinx.NodeID]int
}

const docMagic = "STPK\x02"

// Graph returns the epoch's stratified graph, or nil when the document has
// no relays.
func (t *Topology) Graph() *Graph { return t.graph }

// Relay returns the relay with id, if the epoch has it.
func (t *Topology) Relay(id sphinx.NodeID) (*Relay, bool) {
	i, ok := t.index[id]
	if !ok {
		return nil, false
	}
	return &t.Relays[i], true
}

// Mailbox returns the mailbox with id, if the epoch has it.
func (t *Topology) Mailbox(id sphinx.NodeID) (*NodeInfo, bool) {
	for i := range t.Mailboxes {
		if t.Mailboxes[i].ID == id {
			return &t.Mailboxes[i], true
		}
	}
	return nil, false
}

// Encode returns the canonical encoding of the document.
func (t *Topology) Encode() []byte {
	e := enc{b: make([]byte, 0, 64+len(t.Relays)*200)}
	e.raw([]byte(docMagic))
	e.u8(uint8(len(t.ChainID)))
	e.raw([]byte(t.ChainID))
	e.u64(t.Epoch)
	e.raw(t.Beacon[:])
	e.raw(t.VRFBeacon[:])
	t.Params.encode(&e)
	e.u32(uint32(len(t.Relays)))
	for _, r := range t.Relays {
		encodeNodeInfo(&e, &r.NodeInfo)
		e.raw(r.VRF[:])
		e.u8(uint8(r.Layer))
		if r.Withheld {
			e.u8(1)
		} else {
			e.u8(0)
		}
	}
	e.u32(uint32(len(t.Mailboxes)))
	for i := range t.Mailboxes {
		encodeNodeInfo(&e, &t.Mailboxes[i])
	}
	return e.b
}

func encodeNodeInfo(e *enc, n *NodeInfo) {
	e.raw(n.IdentityKey[:])
	e.raw(n.MixKey[:])
	e.u8(uint8(len(n.Addrs)))
	for _, a := range n.Addrs {
		e.string16(a)
	}
}

func decodeNodeInfo(d *dec) NodeInfo {
	var n NodeInfo
	d.fixed(n.IdentityKey[:], "identity key")
	d.fixed(n.MixKey[:], "mix key")
	if d.err == nil {
		if err := n.MixKey.Validate(); err != nil {
			d.err = fmt.Errorf("%w: mix key at byte %d: %w", ErrMalformed, d.off-len(n.MixKey), err)
		}
	}
	c := int(d.u8("address count"))
	if d.err == nil && c > maxAddrs {
		d.fail("%d addresses, at most %d", c, maxAddrs)
	}
	for i := 0; i < c && d.err == nil; i++ {
		n.Addrs = append(n.Addrs, string(d.bytes16(maxAddrLen, "address")))
	}
	n.ID = sha256.Sum256(n.IdentityKey[:])
	return n
}

// topologyBeacon reads the beacon of a topology document the application
// stored, without checking the rest.
func topologyBeacon(b []byte) ([32]byte, error) {
	var beacon [32]byte
	d := &dec{b: b}
	var magic [len(docMagic)]byte
	d.fixed(magic[:], "magic")
	if d.err == nil && string(magic[:]) != docMagic {
		return beacon, fmt.Errorf("%w: not a topology document (magic %q)", ErrMalformed, magic[:])
	}
	var chain [255]byte
	d.fixed(chain[:d.u8("chain id length")], "chain id")
	d.u64("epoch")
	d.fixed(beacon[:], "beacon")
	return beacon, d.err
}

// Hash is SHA-256 of the canonical encoding.
func (t *Topology) Hash() [32]byte { return sha256.Sum256(t.Encode()) }

// maxDocNodes bounds the node counts a decoder believes before reading.
const maxDocNodes = 1 << 20

// DecodeTopology parses a topology document and checks that it is
// consistent: its beacon follows from its VRF beacon and VRF outputs
// (NextBeacon; equal to the VRF beacon in epoch 0), every relay flagged
// withheld has the sort key WithheldKey and no other relay has, its
// strata and order are those NewGraph derives from its sort keys and
// beacon, no node appears twice, mailboxes are in id order, and every mix key passes [sphinx.PublicKey.Validate] (the chain
// never admits one that fails, so a document carrying one is refused
// whole and a client keeps its last good topology). It fills in every
// relay's Next.
func DecodeTopology(b []byte) (*Topology, error) {
	d := &dec{b: b}
	var magic [len(docMagic)]byte
	d.fixed(magic[:], "magic")
	if d.err == nil && string(magic[:]) != docMagic {
		return nil, fmt.Errorf("%w: not a topology document (magic %q)", ErrMalformed, magic[:])
	}
	t := &Topology{}
	var chain [255]byte
	n := int(d.u8("chain id length"))
	d.fixed(chain[:n], "chain id")
	t.ChainID = string(chain[:n])
	t.Epoch = d.u64("epoch")
	d.fixed(t.Beacon[:], "beacon")
	d.fixed(t.VRFBeacon[:], "vrf beacon")
	t.Params = decodeParams(d)
	nr := int(d.u32("relay count"))
	if d.err == nil && nr > maxDocNodes {
		d.fail("%d relays", nr)
	}
	for i := 0; i < nr && d.err == nil; i++ {
		r := Relay{NodeInfo: decodeNodeInfo(d)}
		d.fixed(r.VRF[:], "vrf")
		r.Layer = int(d.u8("layer"))
		switch w := d.u8("withheld flag"); w {
		case 0, 1:
			r.Withheld = w == 1
		default:
			d.fail("withheld flag %d", w)
		}
		t.Relays = append(t.Relays, r)
	}
	nm := int(d.u32("mailbox count"))
	if d.err == nil && nm > maxDocNodes {
		d.fail("%d mailboxes", nm)
	}
	for i := 0; i < nm && d.err == nil; i++ {
		m := decodeNodeInfo(d)
		if i > 0 && bytes.Compare(t.Mailboxes[i-1].ID[:], m.ID[:]) >= 0 {
			d.fail("mailboxes out of order or repeated")
		}
		t.Mailboxes = append(t.Mailboxes, m)
	}
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("topology document: %w", err)
	}
	if err := t.link(); err != nil {
		return nil, err
	}
	for i := range t.Mailboxes {
		if _, ok := t.index[t.Mailboxes[i].ID]; ok {
			return nil, fmt.Errorf("%w: topology document: mailbox %d (%v) is also a relay", ErrMalformed, i, t.Mailboxes[i].ID)
		}
	}
	return t, nil
}

// link derives the graph from the relays and checks the document agrees
// with it.
func (t *Topology) link() error {
	t.index = make(map[sphinx.NodeID]int, len(t.Relays))
	if t.Epoch == 0 && t.Beacon != t.VRFBeacon {
		return fmt.Errorf("%w: topology document: epoch 0's beacon %x is not its VRF beacon %x", ErrMalformed, t.Beacon[:8], t.VRFBeacon[:8])
	}
	for i, r := range t.Relays {
		if w := WithheldKey(t.VRFBeacon, r.ID); (w == r.VRF) != r.Withheld {
			if r.Withheld {
				return fmt.Errorf("%w: topology document: relay %d (%v) is flagged withheld but its key is not the withheld key", ErrMalformed, i, r.ID)
			}
			return fmt.Errorf("%w: topology document: relay %d (%v) has the withheld key and no flag", ErrMalformed, i, r.ID)
		}
	}
	if b := epochBeacon(t.Epoch, t.VRFBeacon, t.Relays); b != t.Beacon {
		return fmt.Errorf("%w: topology document: beacon %x, its VRF beacon and outputs give %x", ErrMalformed, t.Beacon[:8], b[:8])
	}
	if len(t.Relays) == 0 {
		return nil
	}
	ranked := make([]Ranked, len(t.Relays))
	for i, r := range t.Relays {
		ranked[i] = Ranked{ID: r.ID, VRF: r.VRF}
	}
	g, err := NewGraph(ranked, int(t.Params.Layers), int(t.Params.Successors), t.Beacon)
	if err != nil {
		return fmt.Errorf("%w: topology document: %w", ErrMalformed, err)
	}
	i := 0
	for layer, ids := range g.Layers {
		for slot, id := range ids {
			r := &t.Relays[i]
			if r.ID != id || r.Layer != layer {
				return fmt.Errorf("%w: topology document: relay %d is %v in layer %d, the strata rule puts %v there", ErrMalformed, i, r.ID, r.Layer, id)
			}
			r.Next = g.Next(layer, slot)
			t.index[id] = i
			i++
		}
	}
	t.graph = g
	return nil
}

// NewTopology builds the document of epoch as the chain does from relays
// whose VRF fields are their outputs on vrfBeacon (a relay marked Withheld
// is placed at its WithheldKey) and mailboxes in id order: strata, the
// epoch's beacon (NextBeacon, or vrfBeacon for epoch 0) and links. With
// fewer relays than layers it lists none.
func NewTopology(chainID string, epoch uint64, vrfBeacon [32]byte, p Params, relays []Relay, mailboxes []NodeInfo) (*Topology, error) {
	return buildTopology(chainID, epoch, vrfBeacon, p, relays, mailboxes)
}

// buildTopology orders eligible relays into strata and returns the
// document of epoch. vrfBeacon is the beacon the relays' VRF outputs are
// on; a relay marked Withheld gets its WithheldKey as sort key. The
// document's beacon is epochBeacon over the relays it lists: with fewer
// relays than layers it lists none.
func buildTopology(chainID string, epoch uint64, vrfBeacon [32]byte, p Params, relays []Relay, mailboxes []NodeInfo) (*Topology, error) {
	t := &Topology{ChainID: chainID, Epoch: epoch, VRFBeacon: vrfBeacon, Params: p, Mailboxes: mailboxes}
	if len(relays) < int(p.Layers) {
		relays = nil
	}
	relays = slices.Clone(relays)
	for i := range relays {
		if relays[i].Withheld {
			relays[i].VRF = WithheldKey(vrfBeacon, relays[i].ID)
		}
	}
	t.Beacon = epochBeacon(epoch, vrfBeacon, relays)
	if len(relays) > 0 {
		ranked := make([]Ranked, len(relays))
		byID := make(map[sphinx.NodeID]Relay, len(relays))
		for i, r := range relays {
			ranked[i] = Ranked{ID: r.ID, VRF: r.VRF}
			byID[r.ID] = r
		}
		g, err := NewGraph(ranked, int(p.Layers), int(p.Successors), t.Beacon)
		if err != nil {
			return nil, err
		}
		for layer, ids := range g.Layers {
			for _, id := range ids {
				r := byID[id]
				r.Layer = layer
				t.Relays = append(t.Relays, r)
			}
		}
	}
	if err := t.link(); err != nil {
		return nil, err
	}
	for i := range t.Mailboxes {
		if _, ok := t.index[t.Mailboxes[i].ID]; ok {
			return nil, fmt.Errorf("%w: topology document: mailbox %d (%v) is also a relay", ErrMalformed, i, t.Mailboxes[i].ID)
		}
	}
	return t, nil
}
