package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The mailbox protocol travels in Sphinx payloads: requests in forward
// packets whose final command is DeliverMailbox, responses in SURB replies.
// docs/mailbox.md gives the layout byte by byte.

// Version is the protocol version of this package's messages.
const Version = 1

// Op is a request or response kind.
type Op uint8

// Request ops.
const (
	// OpCreate makes a mailbox enrolled with an auth credential.
	OpCreate Op = 1
	// OpPut stores a message (no authorization: anyone may write).
	OpPut Op = 2
	// OpStock hands the node SURBs to push messages through.
	OpStock Op = 3
	// OpFetch asks for the messages after a sequence number.
	OpFetch Op = 4
	// OpDelete deletes the delivered messages a filter matches.
	OpDelete Op = 5
)

// Response ops.
const (
	// OpOK acknowledges a request.
	OpOK Op = 16
	// OpDeliver carries stored messages.
	OpDeliver Op = 17
	// OpNeedSURBs asks the owner for more SURBs.
	OpNeedSURBs Op = 18
	// OpError reports a refused request.
	OpError Op = 19
)

func (o Op) signed() bool { return o == OpStock || o == OpFetch || o == OpDelete }

// ErrWire reports a malformed protocol message.
var ErrWire = errors.New("mailbox: malformed message")

// Request is a decoded mailbox request.
type Request struct {
	Op      Op
	Mailbox ID
	Type    Type
	// Time is the sender's clock (unix seconds) on signed requests; the
	// node refuses requests far from its own clock.
	Time uint64
	// Plugin and Credential enrol a new mailbox (OpCreate).
	Plugin     byte
	Credential []byte
	// SURBs are encoded SURBs for the node's answers and pushes.
	SURBs [][]byte
	// After is the last sequence number the owner has (OpFetch).
	After uint64
	// Message is the ciphertext to store (OpPut).
	Message []byte
	// Filter is an encoded DeletionFilter (OpDelete).
	Filter []byte
	// Signature authorizes a signed request (OpStock, OpFetch, OpDelete).
	Signature []byte
}

// reqHeader is version (1) ‖ op (1) ‖ mailbox (16) ‖ type (2).
const reqHeader = 1 + 1 + IDSize + 2

// Codec encodes and decodes protocol messages for one SURB size and one
// payload capacity.
type Codec struct {
	// SURBSize is the size of an encoded SURB (sphinx Geometry.SURBSize).
	SURBSize int
	// MaxSize is the largest message the codec produces or accepts
	// (sphinx Geometry.PayloadCapacity).
	MaxSize int
	// SignatureSize is the size of request signatures for the auth
	// plug-in in use.
	SignatureSize int
}

// SignedBytes returns the bytes a signed request's signature covers: a
// domain label and the encoded request without its signature.
func SignedBytes(encodedWithoutSig []byte) []byte {
	return append([]byte("strata-mailbox-v1 request\x00"), encodedWithoutSig...)
}

// EncodeRequest encodes r. For a signed op, sign receives SignedBytes of
// the request and returns the signature appended to it.
func (c Codec) EncodeRequest(r *Request, sign func(msg []byte) ([]byte, error)) ([]byte, error) {
	b := make([]byte, 0, c.MaxSize)
	b = append(b, Version, byte(r.Op))
	b = append(b, r.Mailbox[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Type))
	var err error
	if r.Op.signed() {
		b = binary.BigEndian.AppendUint64(b, r.Time)
	}
	switch r.Op {
	case OpCreate:
		if len(r.Credential) > 255 {
			return nil, fmt.Errorf("%w: credential of %d bytes", ErrWire, len(r.Credential))
		}
		b = append(b, r.Plugin, byte(len(r.Credential)))
		b = append(b, r.Credential...)
		b, err = c.appendSURBs(b, r.SURBs)
	case OpPut:
		if b, err = c.appendSURBs(b, r.SURBs); err == nil {
			b = binary.BigEndian.AppendUint16(b, uint16(len(r.Message)))
			b = append(b, r.Message...)
		}
	case OpStock:
		b, err = c.appendSURBs(b, r.SURBs)
	case OpFetch:
		b = binary.BigEndian.AppendUint64(b, r.After)
		b, err = c.appendSURBs(b, r.SURBs)
	case OpDelete:
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Filter)))
		b = append(b, r.Filter...)
	default:
		return nil, fmt.Errorf("%w: request op %d", ErrWire, r.Op)
	}
	if err != nil {
		return nil, err
	}
	if r.Op.signed() {
		sig, err := sign(SignedBytes(b))
		if err != nil {
			return nil, fmt.Errorf("mailbox: sign request: %w", err)
		}
		if len(sig) != c.SignatureSize {
			return nil, fmt.Errorf("%w: signature of %d bytes, want %d", ErrWire, len(sig), c.SignatureSize)
		}
		b = append(b, sig...)
	}
	if len(b) > c.MaxSize || (r.Op == OpPut && len(r.Message) > 0xffff) || len(r.Filter) > 0xffff {
		return nil, fmt.Errorf("%w: request of %d bytes exceeds %d", ErrWire, len(b), c.MaxSize)
	}
	return b, nil
}

func (c Codec) appendSURBs(b []byte, surbs [][]byte) ([]byte, error) {
	if len(surbs) > 255 {
		return nil, fmt.Errorf("%w: %d SURBs", ErrWire, len(surbs))
	}
	b = append(b, byte(len(surbs)))
	for _, s := range surbs {
		if len(s) != c.SURBSize {
			return nil, fmt.Errorf("%w: SURB of %d bytes, want %d", ErrWire, len(s), c.SURBSize)
		}
		b = append(b, s...)
	}
	return b, nil
}

// reader consumes a message, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: truncated (%d bytes wanted, %d left)", ErrWire, n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// DecodeRequest decodes a request, rejecting anything malformed, oversized
// or with trailing bytes. It does not verify the signature (the node needs
// the mailbox's enrolment for that); Request.Signature and SignedBytes
// give what to verify.
func (c Codec) DecodeRequest(b []byte) (*Request, []byte, error) {
	if len(b) > c.MaxSize {
		return nil, nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrWire, len(b), c.MaxSize)
	}
	rd := &reader{b: b}
	if v := rd.u8(); rd.err == nil && v != Version {
		return nil, nil, fmt.Errorf("%w: version %d", ErrWire, v)
	}
	r := &Request{Op: Op(rd.u8())}
	copy(r.Mailbox[:], rd.take(IDSize))
	r.Type = Type(rd.u16())
	if r.Op.signed() {
		r.Time = rd.u64()
	}
	switch r.Op {
	case OpCreate:
		r.Plugin = rd.u8()
		r.Credential = rd.take(int(rd.u8()))
		r.SURBs = c.readSURBs(rd)
	case OpPut:
		r.SURBs = c.readSURBs(rd)
		r.Message = rd.take(int(rd.u16()))
	case OpStock:
		r.SURBs = c.readSURBs(rd)
	case OpFetch:
		r.After = rd.u64()
		r.SURBs = c.readSURBs(rd)
	case OpDelete:
		r.Filter = rd.take(int(rd.u16()))
	default:
		if rd.err == nil {
			return nil, nil, fmt.Errorf("%w: request op %d", ErrWire, r.Op)
		}
	}
	var signed []byte
	if r.Op.signed() && rd.err == nil {
		signed = SignedBytes(b[:len(b)-len(rd.b)])
		r.Signature = rd.take(c.SignatureSize)
	}
	if rd.err != nil {
		return nil, nil, rd.err
	}
	if len(rd.b) != 0 {
		return nil, nil, fmt.Errorf("%w: %d trailing bytes", ErrWire, len(rd.b))
	}
	return r, signed, nil
}

func (c Codec) readSURBs(rd *reader) [][]byte {
	n := int(rd.u8())
	if rd.err != nil || n == 0 {
		return nil
	}
	if c.SURBSize <= 0 || n*c.SURBSize > len(rd.b) {
		rd.err = fmt.Errorf("%w: %d SURBs of %d bytes in %d bytes", ErrWire, n, c.SURBSize, len(rd.b))
		return nil
	}
	surbs := make([][]byte, n)
	for i := range surbs {
		surbs[i] = rd.take(c.SURBSize)
	}
	return surbs
}
