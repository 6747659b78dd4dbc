package mailbox

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"reflect"
	"testing"

	"github.com/strata-mix/strata/sphinx"
)

// testCodec is the default Sphinx geometry's: 357-byte SURBs, requests
// and responses of at most 2030 bytes, Ed25519 signatures.
var testCodec = CodecFor(sphinx.DefaultGeometry())

func surbs(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{byte(i + 1)}, testCodec.SURBSize)
	}
	return out
}

func TestRequestsRoundTripAndVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sign := func(msg []byte) ([]byte, error) { return ed25519.Sign(priv, msg), nil }
	box := ID{1, 2, 3}
	auth := Ed25519Auth{}
	for _, r := range []*Request{
		{Op: OpCreate, Mailbox: box, Type: 7, Plugin: auth.ID(), Credential: pub, Salt: Salt{9}, Epoch: 3, SURBs: surbs(2)},
		{Op: OpPut, Mailbox: box, Type: 7, SURBs: surbs(1), Message: []byte("ciphertext")},
		{Op: OpPut, Mailbox: box, Type: 7, Message: []byte("no reply wanted")},
		{Op: OpPut, Mailbox: box, Type: 7, Message: []byte("with a put plug-in's proof"), Scheme: 9},
		{Op: OpStock, Mailbox: box, Type: 7, Time: 1764072000, Epoch: 3, Scheme: 1, SURBs: surbs(5)},
		{Op: OpFetch, Mailbox: box, Type: 7, Time: 1764072000, After: 42, Epoch: 4, Scheme: 1, SURBs: surbs(3)},
		{Op: OpDelete, Mailbox: box, Type: 7, Time: 1764072000, Scheme: 1, Filter: []byte("filter bytes")},
	} {
		b, err := testCodec.EncodeRequest(r, sign)
		if err != nil {
			t.Fatalf("%v: %v", r.Op, err)
		}
		got, signed, err := testCodec.DecodeRequest(b)
		if err != nil {
			t.Fatalf("%v: %v", r.Op, err)
		}
		sig := got.Auth
		got.Auth = nil
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("%v: decoded %+v, want %+v", r.Op, got, r)
		}
		if r.Op.signed() {
			stored, _ := auth.Enroll(pub)
			if err := auth.Verify(stored, signed, sig); err != nil {
				t.Fatalf("%v: signature does not verify: %v", r.Op, err)
			}
			b[len(b)-len(sig)-4] ^= 1
			tampered, signed, err := testCodec.DecodeRequest(b)
			if err == nil && auth.Verify(stored, signed, tampered.Auth) == nil {
				t.Fatalf("%v: tampered request still verifies", r.Op)
			}
		}
	}
}

func TestDecodeRequestRejectsMalformed(t *testing.T) {
	good, _ := testCodec.EncodeRequest(&Request{Op: OpFetch, Time: 1, Scheme: 1, SURBs: surbs(1)}, func([]byte) ([]byte, error) { return make([]byte, 64), nil })
	put, _ := testCodec.EncodeRequest(&Request{Op: OpPut, Message: []byte("m")}, nil)
	for name, b := range map[string][]byte{
		"empty":                   nil,
		"bad version":             append([]byte{9}, good[1:]...),
		"version 1":               append([]byte{1}, good[1:]...),
		"unknown op":              append([]byte{Version, 99}, good[2:]...),
		"truncated":               good[:len(good)-1],
		"trailing":                append(bytes.Clone(good), 0),
		"too many SURBs":          append(bytes.Clone(good[:reqHeader+24]), 200),
		"oversize":                make([]byte, testCodec.MaxSize+1),
		"signed op, no scheme":    append(bytes.Clone(good[:len(good)-67]), 0, 0, 0),
		"auth without a scheme":   append(bytes.Clone(put[:len(put)-2]), 0, 1, 7),
		"put without its trailer": put[:len(put)-3],
	} {
		if _, _, err := testCodec.DecodeRequest(b); !errors.Is(err, ErrWire) {
			t.Errorf("%s: %v, want ErrWire", name, err)
		}
	}
	if _, err := testCodec.EncodeRequest(&Request{Op: OpStock, Scheme: 1, SURBs: surbs(6)}, func([]byte) ([]byte, error) { return make([]byte, 64), nil }); !errors.Is(err, ErrWire) {
		t.Errorf("6 SURBs fit in a payload: %v", err)
	}
	if _, err := testCodec.EncodeRequest(&Request{Op: OpStock, SURBs: surbs(1)}, nil); !errors.Is(err, ErrWire) {
		t.Errorf("a stock without a scheme encodes: %v", err)
	}
	// The codec carries authorizations of any length: a plug-in's, not
	// Ed25519's 64 bytes.
	for _, n := range []int{0, 1, 200} {
		b, err := testCodec.EncodeRequest(&Request{Op: OpDelete, Scheme: 5, Filter: []byte("f")}, func([]byte) ([]byte, error) { return make([]byte, n), nil })
		if err != nil {
			t.Fatalf("%d-byte authorization: %v", n, err)
		}
		if r, _, err := testCodec.DecodeRequest(b); err != nil || len(r.Auth) != n || r.Scheme != 5 {
			t.Fatalf("%d-byte authorization decodes to %v, %v", n, r, err)
		}
	}
}

func TestResponsesRoundTrip(t *testing.T) {
	for _, r := range []*Response{
		{Op: OpOK, Mailbox: ID{1}, For: OpPut, Detail: bytes.Repeat([]byte{7}, 32)},
		{Op: OpError, Mailbox: ID{2}, For: OpFetch, Code: CodeRefused, Text: "refused"},
		{Op: OpNeedSURBs, Mailbox: ID{3}, Stock: 2},
		{Op: OpDeliver, Mailbox: ID{4}, Messages: []Message{{Seq: 1, Data: []byte("a")}, {Seq: 9, Data: []byte("bb")}}},
	} {
		b, err := testCodec.EncodeResponse(r)
		if err != nil {
			t.Fatal(err)
		}
		// Responses arrive zero padded to the payload size.
		padded := make([]byte, testCodec.MaxSize)
		copy(padded, b)
		got, err := testCodec.DecodeResponse(padded)
		if err != nil {
			t.Fatalf("%v: %v", r.Op, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("decoded %+v, want %+v", got, r)
		}
	}
	if _, err := testCodec.DecodeResponse([]byte{1, byte(OpNeedSURBs)}); !errors.Is(err, ErrWire) {
		t.Fatalf("truncated response: %v", err)
	}
	// One message as large as a payload allows still fits.
	max := testCodec.MaxSize - DeliverOverhead
	if _, err := testCodec.EncodeResponse(&Response{Op: OpDeliver, Messages: []Message{{Data: make([]byte, max)}}}); err != nil {
		t.Fatalf("largest single delivery: %v", err)
	}
	if _, err := testCodec.EncodeResponse(&Response{Op: OpDeliver, Messages: []Message{{Data: make([]byte, max+1)}}}); !errors.Is(err, ErrWire) {
		t.Fatalf("oversize delivery: %v", err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	sign := func([]byte) ([]byte, error) { return make([]byte, 64), nil }
	for _, r := range []*Request{
		{Op: OpCreate, Credential: make([]byte, 32), Epoch: 1, SURBs: surbs(1)},
		{Op: OpPut, Message: []byte("m")},
		{Op: OpPut, Message: []byte("m"), Scheme: 3},
		{Op: OpPut, Message: []byte("m"), Scheme: WorkScheme},
		{Op: OpStock, Scheme: 1, Epoch: 2, SURBs: surbs(2)},
		{Op: OpFetch, Scheme: 1, SURBs: surbs(1)},
		{Op: OpDelete, Scheme: 1, Filter: []byte("f")},
	} {
		b, _ := testCodec.EncodeRequest(r, sign)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _, err := testCodec.DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrWire) {
				t.Fatalf("error %v does not wrap ErrWire", err)
			}
			return
		}
		out, err := testCodec.EncodeRequest(r, func([]byte) ([]byte, error) { return r.Auth, nil })
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("request does not re-encode: %v", err)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	b, _ := testCodec.EncodeResponse(&Response{Op: OpDeliver, Messages: []Message{{Seq: 1, Data: []byte("x")}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := testCodec.DecodeResponse(b); err != nil && !errors.Is(err, ErrWire) {
			t.Fatalf("error %v does not wrap ErrWire", err)
		}
	})
}
