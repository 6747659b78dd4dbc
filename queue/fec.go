package queue

import (
	"errors"
	"fmt"

	"github.com/xssnick/raptorq"
)

// Erasure coding uses RaptorQ (RFC 6330) through github.com/xssnick/raptorq
// v1.5.1, which has two defects that matter to us, both avoided by padding
// every message to exactly K' source symbols for a K' of RFC 6330's Table 2
// whose P = L − W is not prime:
//
//  1. The library takes P1 as the smallest prime greater than P, where the
//     RFC (section 5.3.3.3) says the smallest prime at least P. The two agree
//     unless P is prime, so with P not prime its repair symbols are those of
//     every RFC implementation.
//  2. When the message does not fill the padded block (K < K'), its decoder
//     wastes received symbols and fails spuriously. With K = K' it cannot.
//
// The cost is padding: the next usable K' is at most a few percent above K.

// ErrFEC reports a bad erasure-coding request or symbol.
var ErrFEC = errors.New("queue: erasure coding")

// SourceBlock returns the number of source symbols K' that a message of k
// symbols is padded to, and its P: the smallest K' ≥ k of RFC 6330 Table 2
// whose P is not prime.
func SourceBlock(k int) (kPrime, p int, err error) {
	if k < 1 {
		return 0, 0, fmt.Errorf("%w: %d source symbols", ErrFEC, k)
	}
	for _, row := range raptorq.ParamsTable {
		if int(row.KPadded) < k {
			continue
		}
		p := int(row.KPadded+row.S+row.H) - int(row.W)
		if !isPrime(p) {
			return int(row.KPadded), p, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: %d source symbols exceed RFC 6330's largest block", ErrFEC, k)
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// checkSymbolSize enforces the chunk geometry: symbols are a positive
// multiple of 8 bytes.
func checkSymbolSize(t int) error {
	if t < 8 || t%8 != 0 || t > 1<<16 {
		return fmt.Errorf("%w: symbol size %d is not a multiple of 8 in [8, 65536]", ErrFEC, t)
	}
	return nil
}

// blockSize returns K' and the padded size in bytes of an n-byte message
// in t-byte symbols.
func blockSize(n, t int) (kPrime int, padded int, err error) {
	if err := checkSymbolSize(t); err != nil {
		return 0, 0, err
	}
	if n < 1 {
		return 0, 0, fmt.Errorf("%w: empty message", ErrFEC)
	}
	kPrime, _, err = SourceBlock((n + t - 1) / t)
	return kPrime, kPrime * t, err
}

// Encoder produces the symbols of one message: ESIs below SourceSymbols are
// the (padded) message itself, higher ESIs are repair symbols, as many as
// wanted.
type Encoder struct {
	enc    *raptorq.Encoder
	kPrime int
}

// NewEncoder encodes msg in symbols of t bytes (a multiple of 8).
func NewEncoder(msg []byte, t int) (*Encoder, error) {
	kPrime, padded, err := blockSize(len(msg), t)
	if err != nil {
		return nil, err
	}
	block := make([]byte, padded)
	copy(block, msg)
	enc, err := raptorq.NewRaptorQ(uint32(t)).CreateEncoder(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFEC, err)
	}
	return &Encoder{enc: enc, kPrime: kPrime}, nil
}

// SourceSymbols is K', the number of source symbols.
func (e *Encoder) SourceSymbols() int { return e.kPrime }

// Symbol returns the symbol with encoding symbol id esi. The slice must not
// be modified.
func (e *Encoder) Symbol(esi uint32) []byte { return e.enc.GenSymbol(esi) }

// Decoder rebuilds one message from any K' distinct symbols (rarely a
// couple more), received in any order, duplicates ignored.
type Decoder struct {
	dec    *raptorq.Decoder
	n      int
	t      int
	kPrime int
	seen   map[uint32]struct{}
	msg    []byte
}

// NewDecoder prepares to decode a message of n bytes coded in t-byte symbols.
func NewDecoder(n, t int) (*Decoder, error) {
	kPrime, padded, err := blockSize(n, t)
	if err != nil {
		return nil, err
	}
	dec, err := raptorq.NewRaptorQ(uint32(t)).CreateDecoder(uint32(padded))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFEC, err)
	}
	return &Decoder{dec: dec, n: n, t: t, kPrime: kPrime, seen: map[uint32]struct{}{}}, nil
}

// SourceSymbols is K'.
func (d *Decoder) SourceSymbols() int { return d.kPrime }

// Add takes a symbol and reports whether the message is now decoded.
func (d *Decoder) Add(esi uint32, sym []byte) (bool, error) {
	if d.msg != nil {
		return true, nil
	}
	if len(sym) != d.t {
		return false, fmt.Errorf("%w: symbol of %d bytes, want %d", ErrFEC, len(sym), d.t)
	}
	if _, dup := d.seen[esi]; dup {
		return false, nil
	}
	d.seen[esi] = struct{}{}
	enough, err := d.dec.AddSymbol(esi, sym)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrFEC, err)
	}
	if !enough {
		return false, nil
	}
	ok, block, err := d.dec.Decode()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrFEC, err)
	}
	if !ok {
		// Not yet solvable: RaptorQ needs one more symbol now and then.
		return false, nil
	}
	d.msg = block[:d.n]
	return true, nil
}

// Message returns the decoded message, or nil before Add reported success.
func (d *Decoder) Message() []byte { return d.msg }

// Received is the number of distinct symbols taken so far.
func (d *Decoder) Received() int { return len(d.seen) }
