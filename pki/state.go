package pki

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/strata-mix/strata/sphinx"
)

// Key prefixes of the application state (docs/pki.md, "State").
const (
	keyEpoch    = "meta/epoch"
	keyParams   = "meta/params"
	keyChainID  = "meta/chain"
	keyPower    = "meta/power"
	prefixVal   = "val/"
	prefixNode  = "node/"
	prefixKey   = "key/"
	prefixVRF   = "vrf/"
	prefixAtt   = "att/"
	prefixSeen  = "seen/"
	prefixTopo  = "topo/"
	keyTopoLive = "meta/live" // epoch 0: the live topology needs rebuilding
)

// Status is where a registered node stands.
type Status uint8

// The statuses.
const (
	StatusPending  Status = 1 // registered, waiting for a quorum of attestations
	StatusAdmitted Status = 2 // admitted: eligible for topologies
)

func (s Status) String() string {
	switch s {
	case StatusPending:
		return "pending"
	case StatusAdmitted:
		return "admitted"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Registration is a registered node as the chain records it.
type Registration struct {
	ID         sphinx.NodeID
	Key        [ed25519.PublicKeySize]byte
	Role       Role
	Status     Status
	Registered uint64 // epoch of the intention; the next one for an intention after that epoch's freeze
	Admitted   uint64 // epoch of admission, when Status is admitted
	LastSeen   uint64 // last epoch in which a quorum attested the node
	Addrs      []string
}

func (n *Registration) encode() []byte {
	e := enc{}
	e.raw(n.Key[:])
	e.u8(uint8(n.Role))
	e.u8(uint8(n.Status))
	e.u64(n.Registered)
	e.u64(n.Admitted)
	e.u64(n.LastSeen)
	e.u8(uint8(len(n.Addrs)))
	for _, a := range n.Addrs {
		e.string16(a)
	}
	return e.b
}

func decodeNode(b []byte) (*Registration, error) {
	d := &dec{b: b}
	n := &Registration{}
	d.fixed(n.Key[:], "key")
	n.Role = Role(d.u8("role"))
	n.Status = Status(d.u8("status"))
	n.Registered = d.u64("registered")
	n.Admitted = d.u64("admitted")
	n.LastSeen = d.u64("last seen")
	c := int(d.u8("address count"))
	for i := 0; i < c && d.err == nil; i++ {
		n.Addrs = append(n.Addrs, string(d.bytes16(maxAddrLen, "address")))
	}
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("node record: %w", err)
	}
	n.ID = sha256.Sum256(n.Key[:])
	return n, nil
}

// EpochInfo is the chain's current epoch.
type EpochInfo struct {
	// Epoch is the current epoch; Open is false until the first block
	// opens epoch 0.
	Epoch uint64
	Open  bool
	// Start is the height of the block that opened the epoch. Beacon is
	// the epoch's beacon: the first block's hash in epoch 0, then the
	// beacon of the epoch's topology document (NextBeacon).
	Start  int64
	Beacon [32]byte
}

// FreezeHeight is the height at whose end the next epoch's topology is
// fixed.
func (ei EpochInfo) FreezeHeight(p Params) int64 {
	return ei.Start + int64(p.EpochBlocks) - int64(p.TopologyLead)
}

// NextStart is the height of the block that opens the next epoch.
func (ei EpochInfo) NextStart(p Params) int64 { return ei.Start + int64(p.EpochBlocks) }

func (ei EpochInfo) encode() []byte {
	e := enc{}
	e.u64(ei.Epoch)
	if ei.Open {
		e.u8(1)
	} else {
		e.u8(0)
	}
	e.u64(uint64(ei.Start))
	e.raw(ei.Beacon[:])
	return e.b
}

func decodeEpochInfo(b []byte) (EpochInfo, error) {
	d := &dec{b: b}
	var ei EpochInfo
	ei.Epoch = d.u64("epoch")
	switch open := d.u8("open"); open {
	case 0, 1:
		ei.Open = open == 1
	default:
		d.fail("open flag %d", open)
	}
	start := d.u64("start")
	if start > math.MaxInt64 {
		d.fail("start height %d", start)
	}
	ei.Start = int64(start)
	d.fixed(ei.Beacon[:], "beacon")
	return ei, d.end()
}

func u64key(prefix string, parts ...[]byte) string {
	b := []byte(prefix)
	for _, p := range parts {
		b = append(b, p...)
	}
	return string(b)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// state wraps a kv with typed accessors. A decoding failure of a record
// the application itself wrote means the store is corrupt, so accessors
// return errors rather than guessing.
type state struct{ kv *kv }

func (s state) chainID() string {
	v, _ := s.kv.get(keyChainID)
	return string(v)
}

func (s state) params() (Params, error) {
	v, ok := s.kv.get(keyParams)
	if !ok {
		return Params{}, fmt.Errorf("pki: state has no parameters: chain not initialised")
	}
	d := &dec{b: v}
	p := decodeParams(d)
	return p, d.end()
}

func (s state) epoch() (EpochInfo, error) {
	v, ok := s.kv.get(keyEpoch)
	if !ok {
		return EpochInfo{}, nil
	}
	return decodeEpochInfo(v)
}

func (s state) setEpoch(ei EpochInfo) { s.kv.set(keyEpoch, ei.encode()) }

func (s state) validatorPower(pub [32]byte) (uint64, bool) {
	v, ok := s.kv.get(u64key(prefixVal, pub[:]))
	if !ok || len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// totalPower is the validator set's voting power, recorded at genesis
// (the set does not change).
func (s state) totalPower() uint64 {
	v, _ := s.kv.get(keyPower)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (s state) node(id sphinx.NodeID) (*Registration, error) {
	v, ok := s.kv.get(u64key(prefixNode, id[:]))
	if !ok {
		return nil, nil
	}
	return decodeNode(v)
}

func (s state) putNode(n *Registration) { s.kv.set(u64key(prefixNode, n.ID[:]), n.encode()) }

// nodes returns every registered node in id order.
func (s state) nodes() ([]*Registration, error) {
	var out []*Registration
	var err error
	s.kv.scan(prefixNode, func(_ string, v []byte) {
		n, e := decodeNode(v)
		if e != nil && err == nil {
			err = e
		}
		if e == nil {
			out = append(out, n)
		}
	})
	return out, err
}

// removeNode forgets a node with its keys and VRF output.
func (s state) removeNode(id sphinx.NodeID) {
	s.kv.del(u64key(prefixNode, id[:]))
	s.kv.del(u64key(prefixVRF, id[:]))
	var keys []string
	s.kv.scan(u64key(prefixKey, id[:]), func(k string, _ []byte) { keys = append(keys, k) })
	for _, k := range keys {
		s.kv.del(k)
	}
}

func (s state) mixKey(id sphinx.NodeID, epoch uint64) (sphinx.PublicKey, bool) {
	var k sphinx.PublicKey
	v, ok := s.kv.get(u64key(prefixKey, id[:], be64(epoch)))
	if !ok || len(v) != len(k) {
		return k, false
	}
	copy(k[:], v)
	return k, true
}

func (s state) setMixKey(id sphinx.NodeID, epoch uint64, k sphinx.PublicKey) {
	s.kv.set(u64key(prefixKey, id[:], be64(epoch)), k[:])
}

// vrf returns the relay's latest VRF output and the epoch whose beacon it
// was computed on.
func (s state) vrf(id sphinx.NodeID) (epoch uint64, out [VRFOutputSize]byte, ok bool) {
	v, found := s.kv.get(u64key(prefixVRF, id[:]))
	if !found || len(v) != 8+VRFOutputSize {
		return 0, out, false
	}
	copy(out[:], v[8:])
	return binary.BigEndian.Uint64(v), out, true
}

func (s state) setVRF(id sphinx.NodeID, epoch uint64, out [VRFOutputSize]byte) {
	s.kv.set(u64key(prefixVRF, id[:]), append(be64(epoch), out[:]...))
}

// attesters returns the validators that attested subject in epoch, in
// key order.
func (s state) attesters(epoch uint64, subject sphinx.NodeID) [][32]byte {
	v, _ := s.kv.get(u64key(prefixAtt, be64(epoch), subject[:]))
	out := make([][32]byte, len(v)/32)
	for i := range out {
		copy(out[i][:], v[32*i:])
	}
	return out
}

func (s state) setAttesters(epoch uint64, subject sphinx.NodeID, vals [][32]byte) {
	b := make([]byte, 0, 32*len(vals))
	for _, v := range vals {
		b = append(b, v[:]...)
	}
	s.kv.set(u64key(prefixAtt, be64(epoch), subject[:]), b)
}

func (s state) seen(h [32]byte) bool {
	_, ok := s.kv.get(u64key(prefixSeen, h[:]))
	return ok
}

func (s state) markSeen(h [32]byte, epoch uint64) { s.kv.set(u64key(prefixSeen, h[:]), be64(epoch)) }

func (s state) topology(epoch uint64) ([]byte, bool) {
	return s.kv.get(u64key(prefixTopo, be64(epoch)))
}

func (s state) setTopology(epoch uint64, doc []byte) { s.kv.set(u64key(prefixTopo, be64(epoch)), doc) }

// pruneBefore deletes the keys under prefix whose 8-byte big-endian number
// after the prefix (at offset within the rest of the key) is below limit.
func (s state) pruneBefore(prefix string, offset int, limit uint64) {
	var dead []string
	s.kv.scan(prefix, func(k string, v []byte) {
		rest := k[len(prefix):]
		if len(rest) >= offset+8 && binary.BigEndian.Uint64([]byte(rest[offset:offset+8])) < limit {
			dead = append(dead, k)
		}
	})
	for _, k := range dead {
		s.kv.del(k)
	}
}

// pruneSeen deletes replay records of transactions signed before limit.
func (s state) pruneSeen(limit uint64) {
	var dead []string
	s.kv.scan(prefixSeen, func(k string, v []byte) {
		if len(v) == 8 && binary.BigEndian.Uint64(v) < limit {
			dead = append(dead, k)
		}
	})
	for _, k := range dead {
		s.kv.del(k)
	}
}
