package mailbox

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// A DeletionFilter is a Bloom filter of message ids that a mailbox owner has
// received; the node deletes the delivered messages that match. Its wire
// form is k (1 byte) ‖ salt (8) ‖ bits (a multiple of 8 bytes).
//
// A false positive deletes a message the owner did not list. The node only
// applies filters to messages it has already delivered at least once, so a
// false positive loses a message only if that delivery was also lost; the
// owner sizes the filter (NewDeletionFilter) for a false-positive rate of
// 1e-6 or less, and the fresh salt of every filter makes false positives
// independent between filters.
type DeletionFilter struct {
	k    int
	salt [8]byte
	bits []byte
}

// Limits of a deletion filter.
const (
	maxFilterHashes = 32
	maxFilterBytes  = 1 << 16
	filterHeader    = 1 + 8
)

// ErrFilter reports a malformed deletion filter.
var ErrFilter = errors.New("mailbox: bad deletion filter")

// NewDeletionFilter returns an empty filter sized for n message ids at a
// false-positive rate p, with a salt read from rand.
func NewDeletionFilter(rand io.Reader, n int, p float64) (*DeletionFilter, error) {
	if n < 1 || p <= 0 || p >= 1 {
		return nil, fmt.Errorf("%w: n=%d p=%v", ErrFilter, n, p)
	}
	m := math.Ceil(-float64(n) * math.Log(p) / (math.Ln2 * math.Ln2))
	bytes := int(math.Ceil(m/64)) * 8
	if bytes > maxFilterBytes {
		return nil, fmt.Errorf("%w: %d ids at p=%v need %d bytes, limit %d", ErrFilter, n, p, bytes, maxFilterBytes)
	}
	k := int(math.Round(float64(bytes*8) / float64(n) * math.Ln2))
	f := &DeletionFilter{k: min(max(k, 1), maxFilterHashes), bits: make([]byte, bytes)}
	if _, err := io.ReadFull(rand, f.salt[:]); err != nil {
		return nil, fmt.Errorf("mailbox: filter salt: %w", err)
	}
	return f, nil
}

// indexes calls fn with the k bit positions of id (double hashing over
// SHA-256(salt ‖ id)).
func (f *DeletionFilter) indexes(id MessageID, fn func(uint64)) {
	var in [8 + len(id)]byte
	copy(in[:], f.salt[:])
	copy(in[8:], id[:])
	h := sha256.Sum256(in[:])
	h1, h2 := binary.LittleEndian.Uint64(h[:8]), binary.LittleEndian.Uint64(h[8:16])|1
	m := uint64(len(f.bits) * 8)
	for i := range uint64(f.k) {
		fn((h1 + i*h2) % m)
	}
}

// Add puts id in the filter.
func (f *DeletionFilter) Add(id MessageID) {
	f.indexes(id, func(b uint64) { f.bits[b/8] |= 1 << (b % 8) })
}

// Contains reports whether id may be in the filter.
func (f *DeletionFilter) Contains(id MessageID) bool {
	in := true
	f.indexes(id, func(b uint64) { in = in && f.bits[b/8]&(1<<(b%8)) != 0 })
	return in
}

// MarshalBinary encodes the filter.
func (f *DeletionFilter) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, filterHeader+len(f.bits))
	b = append(b, byte(f.k))
	b = append(b, f.salt[:]...)
	return append(b, f.bits...), nil
}

// UnmarshalBinary decodes a filter, rejecting any malformed one.
func (f *DeletionFilter) UnmarshalBinary(b []byte) error {
	if len(b) < filterHeader+8 {
		return fmt.Errorf("%w: %d bytes", ErrFilter, len(b))
	}
	k, bits := int(b[0]), b[filterHeader:]
	if k < 1 || k > maxFilterHashes {
		return fmt.Errorf("%w: %d hash functions", ErrFilter, k)
	}
	if len(bits)%8 != 0 || len(bits) > maxFilterBytes {
		return fmt.Errorf("%w: %d bytes of bits", ErrFilter, len(bits))
	}
	f.k = k
	copy(f.salt[:], b[1:filterHeader])
	f.bits = append([]byte(nil), bits...)
	return nil
}
