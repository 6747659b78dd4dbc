package mailbox

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Proof of work on Puts (docs/mailbox.md, "Put work"): a Put of scheme
// WorkScheme carries an 8-byte nonce as its authorization, such that
// SHA-256(WorkDomain ‖ mailbox id ‖ SHA-256(SignedBytes) ‖ nonce) starts
// with at least the node's NodeConfig.PutWork zero bits. SignedBytes covers
// the whole request up to its scheme byte (type, SURBs, message), so work
// done for one Put is worth nothing for another, and a replayed Put is the
// same message, which the store keeps once.

// WorkScheme is the wire id of the proof-of-work Put scheme.
const WorkScheme byte = 2

// WorkNonceSize is the size of a WorkScheme authorization.
const WorkNonceSize = 8

// WorkDomain is the domain label of the work hash.
const WorkDomain = "strata-mailbox-v2 put work\x00"

// DefaultPutWork is the difficulty (leading zero bits) recommended for a
// node's NodeConfig.PutWork: 2^16 hashes on average, about 10–20 ms on
// one core (docs/mailbox.md gives the measured figures).
const DefaultPutWork = 16

// MaxPutWork is the largest difficulty a node accepts as its setting.
const MaxPutWork = 40

// ErrWork means a Put's proof of work is missing or too small, or that a
// sender gave up computing one.
var ErrWork = errors.New("mailbox: not enough work")

// workPrefix is WorkDomain ‖ id ‖ SHA-256(signed), the fixed part of the
// hashed input; the nonce follows it.
func workPrefix(id ID, signed []byte) []byte {
	h := sha256.Sum256(signed)
	b := make([]byte, 0, len(WorkDomain)+IDSize+len(h)+WorkNonceSize)
	b = append(b, WorkDomain...)
	b = append(b, id[:]...)
	return append(b, h[:]...)
}

// zeroBits is the number of leading zero bits of h.
func zeroBits(h *[sha256.Size]byte) int {
	n := 0
	for i := 0; i < len(h); i += 8 {
		w := binary.BigEndian.Uint64(h[i:])
		n += bits.LeadingZeros64(w)
		if w != 0 {
			break
		}
	}
	return n
}

// WorkBits returns the leading zero bits of the work hash of nonce for the
// request of mailbox id whose SignedBytes are signed; 0 when nonce is not
// WorkNonceSize bytes.
func WorkBits(id ID, signed, nonce []byte) int {
	if len(nonce) != WorkNonceSize {
		return 0
	}
	h := sha256.Sum256(append(workPrefix(id, signed), nonce...))
	return zeroBits(&h)
}

// VerifyWork checks that nonce is a proof of at least difficulty bits for
// the request of mailbox id whose SignedBytes are signed: two SHA-256
// computations, whatever the difficulty.
func VerifyWork(id ID, signed, nonce []byte, difficulty int) error {
	if len(nonce) != WorkNonceSize {
		return fmt.Errorf("%w: nonce of %d bytes, want %d", ErrWork, len(nonce), WorkNonceSize)
	}
	if got := WorkBits(id, signed, nonce); got < difficulty {
		return fmt.Errorf("%w: %d zero bits, want %d", ErrWork, got, difficulty)
	}
	return nil
}

// Work is a sender's proof-of-work setting for Puts.
type Work struct {
	// Bits is the difficulty the mailbox node requires (its
	// NodeConfig.PutWork, which the recipient publishes with its mailbox
	// address). 0 sends Puts of scheme 0, without work.
	Bits int
	// MaxHashes caps the hashes tried for one Put; 0 means 2^(Bits+8),
	// which fails with probability e^-256.
	MaxHashes uint64
}

// Worker returns the sign function of EncodeRequest that computes a proof
// of w.Bits for a Put to mailbox id. It tries nonces 0, 1, 2, … and stops
// with an error wrapping ErrWork after w.MaxHashes, or ctx's error when ctx
// ends (checked every 4,096 hashes).
func (w Work) Worker(ctx context.Context, id ID) func(signed []byte) ([]byte, error) {
	return func(signed []byte) ([]byte, error) {
		nonce, _, err := w.solve(ctx, id, signed)
		return nonce, err
	}
}

// solve searches a nonce and returns it with the number of hashes tried.
func (w Work) solve(ctx context.Context, id ID, signed []byte) ([]byte, uint64, error) {
	if w.Bits < 0 || w.Bits > 64 {
		return nil, 0, fmt.Errorf("%w: difficulty %d out of range", ErrWork, w.Bits)
	}
	limit := w.MaxHashes
	if limit == 0 {
		limit = 1 << min(w.Bits+8, 63)
	}
	b := workPrefix(id, signed)
	at := len(b)
	b = b[:at+WorkNonceSize]
	for i := uint64(0); i < limit; i++ {
		if i&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, i, fmt.Errorf("mailbox: put work: %w", err)
			}
		}
		binary.BigEndian.PutUint64(b[at:], i)
		h := sha256.Sum256(b)
		if zeroBits(&h) >= w.Bits {
			return append([]byte(nil), b[at:]...), i + 1, nil
		}
	}
	return nil, limit, fmt.Errorf("%w: no proof of %d bits in %d hashes", ErrWork, w.Bits, limit)
}

// scheme is the Put scheme w sends.
func (w Work) scheme() byte {
	if w.Bits == 0 {
		return 0
	}
	return WorkScheme
}
