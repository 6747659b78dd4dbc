package relay

// tagSet is an exact set of 64-bit tag prefixes: open addressing with
// linear probing, load factor at most 3/4, doubling when fuller, so it never
// fills up and costs 8 / load ≤ 21 bytes an entry (about 11 on average).
// Zero marks an empty slot, so the prefix 0 is stored as 1: two tags whose
// prefixes are 0 and 1 collide, which doubles the false-positive chance of
// two prefixes out of 2⁶⁴. Not safe for concurrent use.
type tagSet struct {
	slots []uint64
	n     int
}

const minTagSlots = 1 << 10

func (s *tagSet) probe(p uint64) (int, bool) {
	mask := uint64(len(s.slots) - 1)
	// Prefixes are outputs of the Sphinx KDF, uniform and beyond any
	// sender's control, so the low bits index the table directly.
	i := p & mask
	for {
		switch s.slots[i] {
		case 0:
			return int(i), false
		case p:
			return int(i), true
		}
		i = (i + 1) & mask
	}
}

// add inserts p and reports whether it was present.
func (s *tagSet) add(p uint64) bool {
	if p == 0 {
		p = 1
	}
	if s.slots == nil {
		s.slots = make([]uint64, minTagSlots)
	}
	i, found := s.probe(p)
	if found {
		return true
	}
	s.slots[i] = p
	s.n++
	if 4*s.n > 3*len(s.slots) {
		s.grow()
	}
	return false
}

func (s *tagSet) contains(p uint64) bool {
	if p == 0 {
		p = 1
	}
	if s.slots == nil {
		return false
	}
	_, found := s.probe(p)
	return found
}

func (s *tagSet) grow() {
	old := s.slots
	s.slots = make([]uint64, 2*len(old))
	for _, p := range old {
		if p != 0 {
			i, _ := s.probe(p)
			s.slots[i] = p
		}
	}
}

// bytes is the memory the set holds.
func (s *tagSet) bytes() int { return 8 * len(s.slots) }
