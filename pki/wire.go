package pki

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrMalformed is wrapped by every decoding error of the package.
var ErrMalformed = errors.New("pki: malformed")

// enc appends the canonical encodings: integers big-endian, variable-length
// fields prefixed by their length. There is exactly one encoding of a value.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)        { e.b = append(e.b, v) }
func (e *enc) u16(v uint16)      { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32)      { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64)      { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) f64(v float64)     { e.u64(math.Float64bits(v)) }
func (e *enc) raw(v []byte)      { e.b = append(e.b, v...) }
func (e *enc) string16(v string) { e.u16(uint16(len(v))); e.b = append(e.b, v...) }

// dec reads what enc writes. The first error sticks: later reads return
// zero values, so a decoder checks err once at the end.
type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", ErrMalformed, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *dec) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("%s: need %d bytes, have %d", what, n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *dec) u8(what string) uint8 {
	if v := d.take(1, what); v != nil {
		return v[0]
	}
	return 0
}

func (d *dec) u16(what string) uint16 {
	if v := d.take(2, what); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *dec) u32(what string) uint32 {
	if v := d.take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *dec) u64(what string) uint64 {
	if v := d.take(8, what); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *dec) f64(what string) float64 {
	v := math.Float64frombits(d.u64(what))
	if math.IsNaN(v) || math.IsInf(v, 0) {
		d.fail("%s: not a finite number", what)
		return 0
	}
	return v
}

// fixed copies exactly len(dst) bytes into dst.
func (d *dec) fixed(dst []byte, what string) {
	if v := d.take(len(dst), what); v != nil {
		copy(dst, v)
	}
}

// bytes16 reads a length-prefixed field of at most max bytes; the result is
// a copy.
func (d *dec) bytes16(max int, what string) []byte {
	n := int(d.u16(what + " length"))
	if d.err == nil && n > max {
		d.fail("%s: %d bytes, at most %d", what, n, max)
		return nil
	}
	v := d.take(n, what)
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// end fails unless every byte was read.
func (d *dec) end() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}
