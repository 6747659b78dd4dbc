package mailbox

import (
	"encoding/binary"
	"fmt"
)

// ErrorCode says why a node refused a request.
type ErrorCode uint8

// Error codes. A refusal for a wrong key is CodeRefused, the same as for a
// mailbox that does not exist, so that a stranger learns nothing.
const (
	CodeMalformed ErrorCode = 1
	CodeRefused   ErrorCode = 2
	CodeQuota     ErrorCode = 3
	CodeExists    ErrorCode = 4
	CodeStale     ErrorCode = 5 // request time too far from the node's clock
	CodeInternal  ErrorCode = 6
)

// Response is a decoded node response.
type Response struct {
	Op      Op
	Mailbox ID
	// For is the request op an OpOK or OpError answers.
	For Op
	// Code and Text explain an OpError.
	Code ErrorCode
	Text string
	// Detail is what an OpOK returns (the message id for a put).
	Detail []byte
	// Messages are the messages an OpDeliver carries (Seq and Data set).
	Messages []Message
	// Stock is the number of SURBs the node holds (OpNeedSURBs).
	Stock uint16
}

// respHeader is version (1) ‖ op (1) ‖ mailbox (16).
const respHeader = 1 + 1 + IDSize

// DeliverOverhead is the encoding overhead of an OpDeliver with one message:
// what is left of a payload for the message is MaxSize − DeliverOverhead.
const DeliverOverhead = respHeader + 1 + 8 + 2

// EncodeResponse encodes r.
func (c Codec) EncodeResponse(r *Response) ([]byte, error) {
	b := make([]byte, 0, c.MaxSize)
	b = append(b, Version, byte(r.Op))
	b = append(b, r.Mailbox[:]...)
	switch r.Op {
	case OpOK:
		if len(r.Detail) > 255 {
			return nil, fmt.Errorf("%w: detail of %d bytes", ErrWire, len(r.Detail))
		}
		b = append(b, byte(r.For), byte(len(r.Detail)))
		b = append(b, r.Detail...)
	case OpError:
		text := r.Text
		if len(text) > 255 {
			text = text[:255]
		}
		b = append(b, byte(r.For), byte(r.Code), byte(len(text)))
		b = append(b, text...)
	case OpNeedSURBs:
		b = binary.BigEndian.AppendUint16(b, r.Stock)
	case OpDeliver:
		if len(r.Messages) > 255 {
			return nil, fmt.Errorf("%w: %d messages", ErrWire, len(r.Messages))
		}
		b = append(b, byte(len(r.Messages)))
		for _, m := range r.Messages {
			if len(m.Data) > 0xffff {
				return nil, fmt.Errorf("%w: message of %d bytes", ErrWire, len(m.Data))
			}
			b = binary.BigEndian.AppendUint64(b, m.Seq)
			b = binary.BigEndian.AppendUint16(b, uint16(len(m.Data)))
			b = append(b, m.Data...)
		}
	default:
		return nil, fmt.Errorf("%w: response op %d", ErrWire, r.Op)
	}
	if len(b) > c.MaxSize {
		return nil, fmt.Errorf("%w: response of %d bytes exceeds %d", ErrWire, len(b), c.MaxSize)
	}
	return b, nil
}

// DecodeResponse decodes a response. Zero padding after it (a SURB reply
// payload is zero padded) is allowed; anything else trailing is not.
func (c Codec) DecodeResponse(b []byte) (*Response, error) {
	if len(b) > c.MaxSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrWire, len(b), c.MaxSize)
	}
	rd := &reader{b: b}
	if v := rd.u8(); rd.err == nil && v != Version {
		return nil, fmt.Errorf("%w: version %d", ErrWire, v)
	}
	r := &Response{Op: Op(rd.u8())}
	copy(r.Mailbox[:], rd.take(IDSize))
	switch r.Op {
	case OpOK:
		r.For = Op(rd.u8())
		r.Detail = rd.take(int(rd.u8()))
	case OpError:
		r.For = Op(rd.u8())
		r.Code = ErrorCode(rd.u8())
		r.Text = string(rd.take(int(rd.u8())))
	case OpNeedSURBs:
		r.Stock = rd.u16()
	case OpDeliver:
		n := int(rd.u8())
		for i := 0; i < n && rd.err == nil; i++ {
			m := Message{Seq: rd.u64()}
			m.Data = rd.take(int(rd.u16()))
			r.Messages = append(r.Messages, m)
		}
	default:
		if rd.err == nil {
			return nil, fmt.Errorf("%w: response op %d", ErrWire, r.Op)
		}
	}
	if rd.err != nil {
		return nil, rd.err
	}
	for _, c := range rd.b {
		if c != 0 {
			return nil, fmt.Errorf("%w: %d trailing bytes", ErrWire, len(rd.b))
		}
	}
	return r, nil
}
