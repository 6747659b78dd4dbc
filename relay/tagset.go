package relay

import (
	"hash/maphash"
	"math/bits"
	"unsafe"
)

// tagSet is an exact set of 64-bit tag prefixes.
//
// Senders choose their packets' tags: a tag is a KDF output, but a sender
// that grinds packets (one NewPacket per try) picks which prefixes it sends,
// so it could aim many at one region of a table indexed by the prefix bits
// and turn every lookup into a long probe. Slots are therefore chosen by a
// keyed hash (hash/maphash, a random seed per set that never leaves the
// process): without the seed a sender cannot tell which prefixes collide.
// The seed need not persist, since the set is rebuilt from the log's
// prefixes at start-up.
//
// The set is split into tagShards shards by the hash's top bits; each is an
// open-addressing table with linear probing, load at most 3/4, growing by
// half when fuller. Splitting keeps a growth step small (one shard's table
// is rebuilt while the others stay as they are), so growing never holds two
// copies of the whole set and never pauses the replay stage for long; the
// factor 3/2 instead of 2 bounds the slack: a shard grows when its load
// passes 3/4 into a table 3/2 as large, so it holds at most 2 slots of 8
// bytes per entry, 16 bytes, besides minShardSlots for a shard of under 24
// entries (TestTagSetWorstCaseMemory, docs/relay.md).
//
// Zero marks an empty slot, so the prefix 0 is stored as 1: two tags whose
// prefixes are 0 and 1 collide, which doubles the false-positive chance of
// two prefixes out of 2⁶⁴. Not safe for concurrent use.
type tagSet struct {
	seed   maphash.Seed
	n      int
	shards [tagShards]tagShard
}

type tagShard struct {
	slots []uint64
	n     int
}

const (
	tagShardBits  = 8
	tagShards     = 1 << tagShardBits
	minShardSlots = 32
)

func newTagSet() *tagSet { return &tagSet{seed: maphash.MakeSeed()} }

// locate returns p's shard and its home slot's hash bits.
func (s *tagSet) locate(p uint64) (*tagShard, uint64) {
	h := maphash.Comparable(s.seed, p)
	return &s.shards[h>>(64-tagShardBits)], h << tagShardBits
}

// home maps the hash bits below the shard index onto a slot (multiply-shift,
// so a table need not be a power of two).
func home(h uint64, slots int) int {
	i, _ := bits.Mul64(h, uint64(slots))
	return int(i)
}

func (sh *tagShard) probe(p, h uint64) (int, bool) {
	i := home(h, len(sh.slots))
	for {
		switch sh.slots[i] {
		case 0:
			return i, false
		case p:
			return i, true
		}
		if i++; i == len(sh.slots) {
			i = 0
		}
	}
}

// add inserts p and reports whether it was present.
func (s *tagSet) add(p uint64) bool {
	if p == 0 {
		p = 1
	}
	sh, h := s.locate(p)
	if sh.slots == nil {
		sh.slots = make([]uint64, minShardSlots)
	}
	i, found := sh.probe(p, h)
	if found {
		return true
	}
	sh.slots[i] = p
	sh.n++
	s.n++
	if 4*sh.n > 3*len(sh.slots) {
		s.grow(sh)
	}
	return false
}

func (s *tagSet) contains(p uint64) bool {
	if p == 0 {
		p = 1
	}
	sh, h := s.locate(p)
	if sh.slots == nil {
		return false
	}
	_, found := sh.probe(p, h)
	return found
}

// grow rebuilds one shard's table half as large again.
func (s *tagSet) grow(sh *tagShard) {
	old := sh.slots
	sh.slots = make([]uint64, growSlots(len(old)))
	for _, p := range old {
		if p != 0 {
			_, h := s.locate(p)
			i, _ := sh.probe(p, h)
			sh.slots[i] = p
		}
	}
}

// growSlots is the table size that follows one of n slots.
func growSlots(n int) int { return n + (n+1)/2 }

// bytes is the memory the set holds.
func (s *tagSet) bytes() int {
	n := int(unsafe.Sizeof(*s))
	for i := range s.shards {
		n += 8 * len(s.shards[i].slots)
	}
	return n
}
