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
// Version 2 added the auth trailer (scheme id and variable-length
// authorization on every request), the key epoch of stocked SURBs and the
// salt a mailbox id is derived with.
const Version = 2

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
	// node refuses requests far from its own clock. Owners send it
	// rounded down to TimeGranularity.
	Time uint64
	// Plugin and Credential enrol a new mailbox (OpCreate); Salt is the
	// salt its id is derived with (DeriveID).
	Plugin     byte
	Credential []byte
	Salt       Salt
	// Epoch is the key epoch the SURBs of OpCreate, OpStock and OpFetch
	// were made under: the node keeps them while that epoch's keys live.
	Epoch uint64
	// SURBs are encoded SURBs for the node's answers and pushes.
	SURBs [][]byte
	// After is the last sequence number the owner has (OpFetch).
	After uint64
	// Message is the ciphertext to store (OpPut).
	Message []byte
	// Filter is an encoded DeletionFilter (OpDelete).
	Filter []byte
	// Scheme is the auth plug-in id of Auth: the mailbox's enrolled
	// plug-in on a signed request (OpStock, OpFetch, OpDelete), 0 (none)
	// or a put plug-in on OpPut, 0 on OpCreate.
	Scheme byte
	// Auth authorizes the request: the plug-in's credential (for
	// Ed25519Auth a 64-byte signature of SignedBytes). Empty for scheme 0.
	Auth []byte
}

// MaxAuth is the largest authorization a request may carry.
const MaxAuth = 0xffff

// authOverhead is the auth trailer's fixed part: scheme (1) ‖ length (2).
const authOverhead = 1 + 2

// reqHeader is version (1) ‖ op (1) ‖ mailbox (16) ‖ type (2).
const reqHeader = 1 + 1 + IDSize + 2

// Codec encodes and decodes protocol messages for one SURB size and one
// payload capacity. It does not depend on any auth plug-in: requests carry
// the plug-in's id and an authorization of any length.
type Codec struct {
	// SURBSize is the size of an encoded SURB (sphinx Geometry.SURBSize).
	SURBSize int
	// MaxSize is the largest message the codec produces or accepts
	// (sphinx Geometry.PayloadCapacity).
	MaxSize int
}

// SignedBytes returns the bytes a request's authorization covers: a domain
// label and the encoded request up to and including its scheme byte.
func SignedBytes(encodedUpToScheme []byte) []byte {
	return append([]byte("strata-mailbox-v2 request\x00"), encodedUpToScheme...)
}

// EncodeRequest encodes r. When r.Scheme is not 0, sign receives
// SignedBytes of the request and returns the authorization appended to it
// (r.Auth is ignored); a signed op needs a scheme.
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
		if len(r.Credential) > 0xffff {
			return nil, fmt.Errorf("%w: credential of %d bytes", ErrWire, len(r.Credential))
		}
		b = append(b, r.Plugin)
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Credential)))
		b = append(b, r.Credential...)
		b = append(b, r.Salt[:]...)
		b = binary.BigEndian.AppendUint64(b, r.Epoch)
		b, err = c.appendSURBs(b, r.SURBs)
	case OpPut:
		if len(r.Message) > 0xffff {
			return nil, fmt.Errorf("%w: message of %d bytes", ErrWire, len(r.Message))
		}
		if b, err = c.appendSURBs(b, r.SURBs); err == nil {
			b = binary.BigEndian.AppendUint16(b, uint16(len(r.Message)))
			b = append(b, r.Message...)
		}
	case OpStock:
		b = binary.BigEndian.AppendUint64(b, r.Epoch)
		b, err = c.appendSURBs(b, r.SURBs)
	case OpFetch:
		b = binary.BigEndian.AppendUint64(b, r.After)
		b = binary.BigEndian.AppendUint64(b, r.Epoch)
		b, err = c.appendSURBs(b, r.SURBs)
	case OpDelete:
		if len(r.Filter) > 0xffff {
			return nil, fmt.Errorf("%w: filter of %d bytes", ErrWire, len(r.Filter))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Filter)))
		b = append(b, r.Filter...)
	default:
		return nil, fmt.Errorf("%w: request op %d", ErrWire, r.Op)
	}
	if err != nil {
		return nil, err
	}
	if err := checkScheme(r.Op, r.Scheme); err != nil {
		return nil, err
	}
	b = append(b, r.Scheme)
	var auth []byte
	if r.Scheme != 0 {
		if sign == nil {
			return nil, fmt.Errorf("mailbox: scheme %d needs an authorization", r.Scheme)
		}
		if auth, err = sign(SignedBytes(b)); err != nil {
			return nil, fmt.Errorf("mailbox: authorize request: %w", err)
		}
		if len(auth) > MaxAuth {
			return nil, fmt.Errorf("%w: authorization of %d bytes", ErrWire, len(auth))
		}
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(auth)))
	b = append(b, auth...)
	if len(b) > c.MaxSize {
		return nil, fmt.Errorf("%w: request of %d bytes exceeds %d", ErrWire, len(b), c.MaxSize)
	}
	return b, nil
}

// checkScheme enforces which ops carry which schemes: signed ops a plug-in
// (not 0), Create none (0), Put either.
func checkScheme(op Op, scheme byte) error {
	switch {
	case op.signed() && scheme == 0:
		return fmt.Errorf("%w: %s without an auth scheme", ErrWire, opName(op))
	case op == OpCreate && scheme != 0:
		return fmt.Errorf("%w: create with auth scheme %d", ErrWire, scheme)
	}
	return nil
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
// or with trailing bytes, and returns SignedBytes of it (what Auth must
// authorize). It does not verify the authorization (the node needs the
// mailbox's enrolment for that).
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
		r.Credential = rd.take(int(rd.u16()))
		copy(r.Salt[:], rd.take(SaltSize))
		r.Epoch = rd.u64()
		r.SURBs = c.readSURBs(rd)
	case OpPut:
		r.SURBs = c.readSURBs(rd)
		r.Message = rd.take(int(rd.u16()))
	case OpStock:
		r.Epoch = rd.u64()
		r.SURBs = c.readSURBs(rd)
	case OpFetch:
		r.After = rd.u64()
		r.Epoch = rd.u64()
		r.SURBs = c.readSURBs(rd)
	case OpDelete:
		r.Filter = rd.take(int(rd.u16()))
	default:
		if rd.err == nil {
			return nil, nil, fmt.Errorf("%w: request op %d", ErrWire, r.Op)
		}
	}
	r.Scheme = rd.u8()
	var signed []byte
	if rd.err == nil {
		signed = SignedBytes(b[:len(b)-len(rd.b)])
		if err := checkScheme(r.Op, r.Scheme); err != nil {
			return nil, nil, err
		}
	}
	r.Auth = rd.take(int(rd.u16()))
	if rd.err != nil {
		return nil, nil, rd.err
	}
	if r.Scheme == 0 && len(r.Auth) != 0 {
		return nil, nil, fmt.Errorf("%w: authorization of %d bytes without a scheme", ErrWire, len(r.Auth))
	}
	if len(r.Auth) == 0 {
		r.Auth = nil
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
