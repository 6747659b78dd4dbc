package pki

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"slices"
)

// linkDomain separates the link stream from every other use of the beacon.
const linkDomain = "strata-topology-v2"

// linkStream is the deterministic byte stream an attempt at the links from
// one layer is drawn from: SHA-256(linkDomain ‖ 0x00 ‖ beacon ‖
// uint32_be(layer) ‖ uint32_be(attempt) ‖ uint64_be(c)) for c = 0, 1, 2, …,
// read as big-endian 64-bit words.
type linkStream struct {
	in  [len(linkDomain) + 1 + 32 + 4 + 4 + 8]byte
	buf [sha256.Size]byte
	c   uint64
	off int
}

func newLinkStream(beacon [32]byte, layer, attempt int) *linkStream {
	s := &linkStream{off: sha256.Size}
	n := copy(s.in[:], linkDomain)
	n++ // 0x00 separator
	n += copy(s.in[n:], beacon[:])
	binary.BigEndian.PutUint32(s.in[n:], uint32(layer))
	binary.BigEndian.PutUint32(s.in[n+4:], uint32(attempt))
	return s
}

func (s *linkStream) word() uint64 {
	if s.off == sha256.Size {
		binary.BigEndian.PutUint64(s.in[len(s.in)-8:], s.c)
		s.buf = sha256.Sum256(s.in[:])
		s.c++
		s.off = 0
	}
	w := binary.BigEndian.Uint64(s.buf[s.off:])
	s.off += 8
	return w
}

// uniform returns a uniform integer in [0, b), b ≥ 1, by rejection: words
// at or above the largest multiple of b below 2^64 are skipped.
func (s *linkStream) uniform(b int) int {
	ub := uint64(b)
	limit := math.MaxUint64 - (math.MaxUint64%ub+1)%ub // 2^64 − (2^64 mod b) − 1
	for {
		if w := s.word(); w <= limit {
			return int(w % ub)
		}
	}
}

// permutation fills p with a uniform permutation of 0 … len(p)−1 by
// Fisher–Yates: start from the identity, then for t = len(p)−1 down to 1
// swap p[t] with p[uniform(t+1)].
func (s *linkStream) permutation(p []int32) {
	for i := range p {
		p[i] = int32(i)
	}
	for t := len(p) - 1; t > 0; t-- {
		u := s.uniform(t + 1)
		p[t], p[u] = p[u], p[t]
	}
}

// links returns the successors of every slot of a layer of n relays into a
// next layer of m: slot j's min(k, m) distinct successors are
// out[j·k′ : (j+1)·k′] with k′ = min(k, m). The sequence out concatenates
// permutations of the m next slots drawn from the beacon's stream for the
// layer, the last one cut short, so every next slot appears ⌊n·k′/m⌋ or
// ⌈n·k′/m⌉ times. Where a slot's window straddles two permutations, the
// head of the new permutation is repaired so the window holds no slot
// twice: each of its first h positions holding a slot already in the
// window's tail is swapped with the first later position (from h on)
// holding one that is not. docs/pki.md specifies it for other
// implementations.
func links(beacon [32]byte, layer, attempt, n, m, k int) []int32 {
	k = min(k, m)
	total := n * k
	out := make([]int32, 0, total)
	s := newLinkStream(beacon, layer, attempt)
	perm := make([]int32, m)
	for len(out) < total {
		s.permutation(perm)
		if r := len(out) % k; r != 0 {
			h := k - r
			tail := out[len(out)-r:]
			q := h
			for p := range h {
				if !slices.Contains(tail, perm[p]) {
					continue
				}
				for slices.Contains(tail, perm[q]) {
					q++
				}
				perm[p], perm[q] = perm[q], perm[p]
				q++
			}
		}
		out = append(out, perm[:min(m, total-len(out))]...)
	}
	return out
}

// maxLinkAttempts bounds the attempts chooseLinks draws for one layer.
const maxLinkAttempts = 64

// chooseLinks draws the links from layer i (n relays) into layer i+1 (m
// relays). Layer 0 takes attempt 0. A later layer scores each attempt by
// the two-hop reach of the previous layer, whose links prev (with kPrev =
// min(k, n) a relay) are already fixed: the fewest relays of layer i+1 any
// relay of layer i−1 reaches. It takes the first attempt whose score is at
// least ⌈9/10 · min(m, kPrev·min(k, m))⌉, or, if none of maxLinkAttempts
// is, the first attempt of highest score.
func chooseLinks(beacon [32]byte, layer, n, m, k int, prev []int32, kPrev int) []int32 {
	if layer == 0 || prev == nil {
		return links(beacon, layer, 0, n, m, k)
	}
	k = min(k, m)
	goal := (9*min(m, kPrev*k) + 9) / 10
	seen := make([]int, m) // seen[s] = 1 + the last source that reached s
	var best []int32
	bestScore := -1
	for attempt := range maxLinkAttempts {
		out := links(beacon, layer, attempt, n, m, k)
		clear(seen)
		score := m
		for src := range len(prev) / kPrev {
			reach := 0
			for _, mid := range prev[src*kPrev : (src+1)*kPrev] {
				for _, s := range out[int(mid)*k : (int(mid)+1)*k] {
					if seen[s] != src+1 {
						seen[s] = src + 1
						reach++
					}
				}
			}
			score = min(score, reach)
		}
		if score >= goal {
			return out
		}
		if score > bestScore {
			best, bestScore = out, score
		}
	}
	return best
}
