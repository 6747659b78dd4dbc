package mailbox

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"testing"

	"github.com/strata-mix/strata/internal/testvec"
	"github.com/strata-mix/strata/sphinx"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors.json")

const vectorsPath = "testdata/vectors.json"

type hexBytes = testvec.Hex

var hb = testvec.Of

// vectorFile is mailbox/testdata/vectors.json.
type vectorFile struct {
	Comment   string         `json:"comment"`
	Version   int            `json:"version"`
	SURBSize  int            `json:"surb_size"`
	MaxSize   int            `json:"max_size"`
	KeySeed   hexBytes       `json:"ed25519_seed"`
	PublicKey hexBytes       `json:"ed25519_public_key"`
	IDs       []idVector     `json:"mailbox_ids"`
	Requests  []reqVector    `json:"requests"`
	Refused   []badVector    `json:"refused_requests"`
	Responses []respVector   `json:"responses"`
	Filters   []filterVector `json:"deletion_filters"`
	PutWork   []workVector   `json:"put_work"`
}

// workVector is a Put of WorkScheme and its proof of work at a difficulty
// (docs/mailbox.md, "Put work").
type workVector struct {
	Request    reqVector `json:"request"`
	Difficulty int       `json:"difficulty"`
	// PrefixHash is SHA-256(signed_message); WorkHash is SHA-256 of
	// WorkDomain ‖ mailbox ‖ PrefixHash ‖ auth (the nonce).
	PrefixHash hexBytes `json:"signed_hash"`
	WorkHash   hexBytes `json:"work_hash"`
	ZeroBits   int      `json:"zero_bits"`
	Accepted   bool     `json:"accepted"`
}

// idVector is a mailbox id derivation (DeriveID).
type idVector struct {
	Type       Type     `json:"type"`
	Plugin     byte     `json:"plugin"`
	Credential hexBytes `json:"credential"`
	Salt       hexBytes `json:"salt"`
	ID         hexBytes `json:"id"`
}

// badVector is an encoding every decoder must refuse.
type badVector struct {
	Name     string   `json:"name"`
	Encoding hexBytes `json:"encoding"`
}

type reqVector struct {
	Name       string     `json:"name"`
	Op         Op         `json:"op"`
	OpName     string     `json:"op_name"`
	Mailbox    hexBytes   `json:"mailbox"`
	Type       Type       `json:"type"`
	Time       uint64     `json:"time,omitempty"`
	Plugin     byte       `json:"plugin,omitempty"`
	Credential hexBytes   `json:"credential,omitempty"`
	Salt       hexBytes   `json:"salt,omitempty"`
	After      uint64     `json:"after,omitempty"`
	Epoch      uint64     `json:"epoch,omitempty"`
	SURBs      []hexBytes `json:"surbs,omitempty"`
	Message    hexBytes   `json:"message,omitempty"`
	Filter     hexBytes   `json:"filter,omitempty"`
	Scheme     byte       `json:"scheme"`
	// Signed is what the authorization covers (SignedBytes).
	Signed   hexBytes `json:"signed_message"`
	Auth     hexBytes `json:"auth,omitempty"`
	Encoding hexBytes `json:"encoding"`
}

type vecMessage struct {
	Seq  uint64   `json:"seq"`
	Data hexBytes `json:"data"`
}

type respVector struct {
	Name     string       `json:"name"`
	Op       Op           `json:"op"`
	OpName   string       `json:"op_name"`
	Mailbox  hexBytes     `json:"mailbox"`
	For      Op           `json:"for,omitempty"`
	Code     ErrorCode    `json:"code,omitempty"`
	Text     string       `json:"text,omitempty"`
	Detail   hexBytes     `json:"detail,omitempty"`
	Messages []vecMessage `json:"messages,omitempty"`
	Stock    uint16       `json:"stock,omitempty"`
	Encoding hexBytes     `json:"encoding"`
}

type filterVector struct {
	Name string `json:"name"`
	// N and P size the filter (NewDeletionFilter); they are not on the wire.
	N    int      `json:"n"`
	P    float64  `json:"p"`
	K    int      `json:"k"`
	Salt hexBytes `json:"salt"`
	// IDs are the message ids added; Absent are ids the filter must not
	// match.
	IDs      []hexBytes `json:"ids"`
	Absent   []hexBytes `json:"absent"`
	Bits     hexBytes   `json:"bits"`
	Encoding hexBytes   `json:"encoding"`
}

const vectorComment = "Strata mailbox protocol test vectors, version 2 (docs/mailbox.md, \"Protocol\" and \"Deletions by Bloom filter\"), " +
	"for the codec of the default Sphinx geometry (mailbox.CodecFor(sphinx.DefaultGeometry())). " +
	"Byte strings are hex. Signed requests (scheme 1) are signed with the Ed25519 key of 'ed25519_seed'; " +
	"'signed_message' is what the authorization covers ('auth' is the signature). 'mailbox_ids' are id derivations; " +
	"the create request's mailbox is the first. 'refused_requests' are encodings a decoder must refuse. " +
	"SURBs are filler bytes of the SURB size: the codec does not parse them. " +
	"Responses may be followed by zero padding up to max_size. A deletion filter's 'ids' are SHA-256 of the messages " +
	"\"message 0\", \"message 1\", ...; 'n' and 'p' only size the filter, 'encoding' is what an OpDelete carries. " +
	"'put_work' are Puts of scheme 2 (proof of work) whose 'auth' is the nonce: 'work_hash' is SHA-256(\"strata-mailbox-v2 put work\\x00\" ‖ mailbox ‖ " +
	"'signed_hash' ‖ nonce), 'signed_hash' SHA-256 of 'signed_message'; a node requiring 'difficulty' bits accepts it iff 'zero_bits' ≥ 'difficulty'."

var opNames = map[Op]string{
	OpCreate: "create", OpPut: "put", OpStock: "stock", OpFetch: "fetch", OpDelete: "delete",
	OpOK: "ok", OpDeliver: "deliver", OpNeedSURBs: "need-surbs", OpError: "error",
}

func vectorCodec() Codec { return CodecFor(sphinx.DefaultGeometry()) }

func vectorKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("strata mailbox test vector key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

func signWith(key ed25519.PrivateKey) func([]byte) ([]byte, error) {
	return func(msg []byte) ([]byte, error) { return ed25519.Sign(key, msg), nil }
}

func reqVectorOf(name string, r *Request, signed, encoding []byte) reqVector {
	v := reqVector{Name: name, Op: r.Op, OpName: opNames[r.Op], Mailbox: hb(r.Mailbox[:]), Type: r.Type, Time: r.Time,
		Plugin: r.Plugin, Credential: hb(r.Credential), After: r.After, Epoch: r.Epoch, Message: hb(r.Message), Filter: hb(r.Filter),
		Scheme: r.Scheme, Signed: hb(signed), Auth: hb(r.Auth), Encoding: hb(encoding)}
	if r.Op == OpCreate {
		v.Salt = hb(r.Salt[:])
	}
	for _, s := range r.SURBs {
		v.SURBs = append(v.SURBs, hb(s))
	}
	return v
}

// request returns the request a vector describes, without its signature.
func (v reqVector) request() *Request {
	r := &Request{Op: v.Op, Mailbox: ID(v.Mailbox), Type: v.Type, Time: v.Time, Plugin: v.Plugin,
		Credential: v.Credential, After: v.After, Epoch: v.Epoch, Message: v.Message, Filter: v.Filter, Scheme: v.Scheme}
	copy(r.Salt[:], v.Salt)
	for _, s := range v.SURBs {
		r.SURBs = append(r.SURBs, s)
	}
	return r
}

func respVectorOf(name string, r *Response, encoding []byte) respVector {
	v := respVector{Name: name, Op: r.Op, OpName: opNames[r.Op], Mailbox: hb(r.Mailbox[:]), For: r.For, Code: r.Code,
		Text: r.Text, Detail: hb(r.Detail), Stock: r.Stock, Encoding: hb(encoding)}
	for _, m := range r.Messages {
		v.Messages = append(v.Messages, vecMessage{Seq: m.Seq, Data: hb(m.Data)})
	}
	return v
}

func (v respVector) response() *Response {
	r := &Response{Op: v.Op, Mailbox: ID(v.Mailbox), For: v.For, Code: v.Code, Text: v.Text, Detail: v.Detail, Stock: v.Stock}
	for _, m := range v.Messages {
		r.Messages = append(r.Messages, Message{Seq: m.Seq, Data: m.Data})
	}
	return r
}

// buildFilter makes the filter a vector describes from its inputs.
func (v filterVector) build() (*DeletionFilter, error) {
	f, err := NewDeletionFilter(bytes.NewReader(v.Salt), v.N, v.P)
	if err != nil {
		return nil, err
	}
	for _, id := range v.IDs {
		f.Add(MessageID(id))
	}
	return f, nil
}

func makeFilterVector(t *testing.T, name string, n int, p float64, salt []byte, added int) filterVector {
	t.Helper()
	v := filterVector{Name: name, N: n, P: p, Salt: salt}
	for i := range added {
		id := MessageIDOf(fmt.Appendf(nil, "message %d", i))
		v.IDs = append(v.IDs, hb(id[:]))
	}
	f, err := v.build()
	if err != nil {
		t.Fatal(err)
	}
	for i := added; len(v.Absent) < 2; i++ {
		if id := MessageIDOf(fmt.Appendf(nil, "message %d", i)); !f.Contains(id) {
			v.Absent = append(v.Absent, hb(id[:]))
		}
	}
	enc, _ := f.MarshalBinary()
	v.K, v.Bits, v.Encoding = f.k, hb(f.bits), hb(enc)
	return v
}

// makeVectors builds the published vectors from their inputs.
func makeVectors(t *testing.T) vectorFile {
	t.Helper()
	c := vectorCodec()
	key := vectorKey()
	pub := key.Public().(ed25519.PublicKey)
	vf := vectorFile{Comment: vectorComment, Version: Version, SURBSize: c.SURBSize, MaxSize: c.MaxSize,
		KeySeed: key.Seed(), PublicKey: hb(pub)}
	const typ, now = Type(2), 1764072000
	salt := Salt{0x5a, 0x17}
	for _, in := range []struct {
		salt Salt
		typ  Type
	}{{salt, typ}, {Salt{}, typ}, {salt, 3}} {
		id := DeriveID(in.typ, Ed25519Auth{}.ID(), pub, in.salt)
		vf.IDs = append(vf.IDs, idVector{Type: in.typ, Plugin: Ed25519Auth{}.ID(), Credential: hb(pub), Salt: hb(in.salt[:]), ID: hb(id[:])})
	}

	vf.Filters = []filterVector{
		makeFilterVector(t, "4 ids at p=1e-6 (the owner's sizing)", 4, 1e-6, []byte("saltsalt"), 4),
		makeFilterVector(t, "3 of 10 ids at p=1e-3", 10, 1e-3, []byte{0, 1, 2, 3, 4, 5, 6, 7}, 3),
	}

	box := ID(vf.IDs[0].ID)
	surbs := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = bytes.Repeat([]byte{byte(0xa1 + i)}, c.SURBSize)
		}
		return out
	}
	msg := []byte("Strata mailbox test vector: a sealed message")
	for _, in := range []struct {
		name string
		r    *Request
	}{
		{"create with an Ed25519 key, a salt and 2 SURBs of epoch 7", &Request{Op: OpCreate, Mailbox: box, Type: typ, Plugin: Ed25519Auth{}.ID(), Credential: pub, Salt: salt, Epoch: 7, SURBs: surbs(2)}},
		{"put with a SURB for the answer", &Request{Op: OpPut, Mailbox: box, Type: typ, SURBs: surbs(1), Message: msg}},
		{"put without a SURB", &Request{Op: OpPut, Mailbox: box, Type: typ, Message: []byte("no answer wanted")}},
		{"stock 5 SURBs of epoch 7 (the most a payload holds)", &Request{Op: OpStock, Mailbox: box, Type: typ, Time: now, Epoch: 7, Scheme: 1, SURBs: surbs(5)}},
		{"fetch after 41 with 1 SURB of epoch 8", &Request{Op: OpFetch, Mailbox: box, Type: typ, Time: now, After: 41, Epoch: 8, Scheme: 1, SURBs: surbs(1)}},
		{"delete by filter", &Request{Op: OpDelete, Mailbox: box, Type: typ, Time: now + 300, Scheme: 1, Filter: vf.Filters[0].Encoding}},
	} {
		b, err := c.EncodeRequest(in.r, signWith(key))
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		r, signed, err := c.DecodeRequest(b)
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		vf.Requests = append(vf.Requests, reqVectorOf(in.name, r, signed, b))
	}
	vf.Refused = refusedVectors(t, c, vf.Requests)
	vf.PutWork = workVectors(t, c, box, typ, surbs(1))

	id := MessageIDOf(msg)
	for _, in := range []struct {
		name string
		r    *Response
	}{
		{"ok: mailbox created", &Response{Op: OpOK, Mailbox: box, For: OpCreate}},
		{"ok: message stored, its id", &Response{Op: OpOK, Mailbox: box, For: OpPut, Detail: id[:]}},
		{"deliver 2 messages", &Response{Op: OpDeliver, Mailbox: box, Messages: []Message{{Seq: 42, Data: msg}, {Seq: 43, Data: []byte("another")}}}},
		{"need SURBs, 2 left", &Response{Op: OpNeedSURBs, Mailbox: box, Stock: 2}},
		{"error: fetch refused", &Response{Op: OpError, Mailbox: box, For: OpFetch, Code: CodeRefused, Text: "refused"}},
		{"error: put over quota", &Response{Op: OpError, Mailbox: box, For: OpPut, Code: CodeQuota, Text: "mailbox full"}},
	} {
		b, err := c.EncodeResponse(in.r)
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		vf.Responses = append(vf.Responses, respVectorOf(in.name, in.r, b))
	}
	return vf
}

var jsonOf = testvec.JSON

// TestVectors checks testdata/vectors.json both ways: the fields of every
// vector encode to its bytes, and its bytes decode to its fields.
func TestVectors(t *testing.T) {
	var vf vectorFile
	testvec.Load(t, vectorsPath, *updateVectors, func() any { return makeVectors(t) }, &vf)
	if jsonOf(t, vf) != jsonOf(t, makeVectors(t)) {
		t.Error("testdata/vectors.json differs from what the code produces (go test ./mailbox -run TestVectors -update)")
	}
	c := vectorCodec()
	if vf.Version != Version || vf.SURBSize != c.SURBSize || vf.MaxSize != c.MaxSize {
		t.Fatalf("vectors are for version %d, SURBs of %d, messages up to %d bytes; the codec is version %d, %+v", vf.Version, vf.SURBSize, vf.MaxSize, Version, c)
	}
	for i, v := range vf.IDs {
		if id := DeriveID(v.Type, v.Plugin, v.Credential, Salt(v.Salt)); !bytes.Equal(id[:], v.ID) {
			t.Errorf("id %d derives to %x, vector says %x", i, id, v.ID)
		}
		if id := independentID(v); !bytes.Equal(id, v.ID) {
			t.Errorf("id %d: the documented derivation gives %x, vector says %x", i, id, v.ID)
		}
	}
	for _, v := range vf.Refused {
		if _, _, err := c.DecodeRequest(v.Encoding); !errors.Is(err, ErrWire) {
			t.Errorf("refused request %q decodes: %v", v.Name, err)
		}
	}
	key := ed25519.NewKeyFromSeed(vf.KeySeed)
	if pub := key.Public().(ed25519.PublicKey); !bytes.Equal(pub, vf.PublicKey) {
		t.Fatalf("public key %x, vector says %x", pub, vf.PublicKey)
	}
	ops := map[Op]bool{}

	for _, v := range vf.Requests {
		t.Run("request/"+v.Name, func(t *testing.T) {
			ops[v.Op] = true
			b, err := c.EncodeRequest(v.request(), signWith(key))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, v.Encoding) {
				t.Fatalf("encodes to\n%x\nvector says\n%x", b, v.Encoding)
			}
			r, signed, err := c.DecodeRequest(v.Encoding)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := jsonOf(t, reqVectorOf(v.Name, r, signed, v.Encoding)), jsonOf(t, v); got != want {
				t.Fatalf("decodes to\n%s\nvector says\n%s", got, want)
			}
			if want := independentRequest(v); !bytes.Equal(want, v.Encoding) {
				t.Fatalf("the documented layout gives\n%x\nvector says\n%x", want, v.Encoding)
			}
			if v.Op.signed() {
				if v.Scheme != 1 || len(v.Auth) == 0 || !bytes.HasSuffix(v.Encoding, v.Auth) {
					t.Fatal("signed request without its Ed25519 authorization at the end")
				}
				if err := (Ed25519Auth{}).Verify(vf.PublicKey, v.Signed, v.Auth); err != nil {
					t.Fatalf("signature does not verify: %v", err)
				}
			} else if len(v.Auth) != 0 || v.Scheme != 0 || v.Time != 0 {
				t.Fatal("unsigned request with an authorization or a time")
			}
		})
	}

	for _, v := range vf.Responses {
		t.Run("response/"+v.Name, func(t *testing.T) {
			ops[v.Op] = true
			b, err := c.EncodeResponse(v.response())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, v.Encoding) {
				t.Fatalf("encodes to\n%x\nvector says\n%x", b, v.Encoding)
			}
			padded := make([]byte, c.MaxSize)
			copy(padded, v.Encoding)
			for _, in := range [][]byte{v.Encoding, padded} {
				r, err := c.DecodeResponse(in)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := jsonOf(t, respVectorOf(v.Name, r, v.Encoding)), jsonOf(t, v); got != want {
					t.Fatalf("%d bytes decode to\n%s\nvector says\n%s", len(in), got, want)
				}
			}
		})
	}
	for _, v := range vf.PutWork {
		t.Run("put work/"+v.Request.Name, func(t *testing.T) {
			checkWorkVector(t, c, v)
		})
	}
	for op, name := range opNames {
		if !ops[op] {
			t.Errorf("no vector for op %d (%s)", op, name)
		}
	}

	for _, v := range vf.Filters {
		t.Run("filter/"+v.Name, func(t *testing.T) {
			f, err := v.build()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := f.MarshalBinary()
			if !bytes.Equal(b, v.Encoding) {
				t.Fatalf("encodes to\n%x\nvector says\n%x", b, v.Encoding)
			}
			var g DeletionFilter
			if err := g.UnmarshalBinary(v.Encoding); err != nil {
				t.Fatal(err)
			}
			if g.k != v.K || !bytes.Equal(g.salt[:], v.Salt) || !bytes.Equal(g.bits, v.Bits) {
				t.Fatalf("decodes to k=%d salt=%x bits=%x", g.k, g.salt, g.bits)
			}
			for _, id := range v.IDs {
				if !g.Contains(MessageID(id)) {
					t.Fatalf("id %x not matched", id)
				}
			}
			for _, id := range v.Absent {
				if g.Contains(MessageID(id)) {
					t.Fatalf("absent id %x matched", id)
				}
			}
		})
	}
}

// independentID derives a vector's id as docs/mailbox.md states it,
// without DeriveID.
func independentID(v idVector) []byte {
	b := []byte("strata-mailbox-v2 id\x00")
	b = binary.BigEndian.AppendUint16(b, uint16(v.Type))
	b = append(b, v.Plugin)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v.Credential)))
	b = append(append(b, v.Credential...), v.Salt...)
	sum := sha256.Sum256(b)
	return sum[:16]
}

// independentRequest lays a request vector out as docs/mailbox.md states
// it, without the codec, and checks signed_message is its prefix up to the
// scheme under the label.
func independentRequest(v reqVector) []byte {
	u16 := func(b []byte, n int) []byte { return binary.BigEndian.AppendUint16(b, uint16(n)) }
	u64 := binary.BigEndian.AppendUint64
	surbs := func(b []byte) []byte {
		b = append(b, byte(len(v.SURBs)))
		for _, s := range v.SURBs {
			b = append(b, s...)
		}
		return b
	}
	b := append([]byte{2, byte(v.Op)}, v.Mailbox...)
	b = u16(b, int(v.Type))
	if v.Op == OpStock || v.Op == OpFetch || v.Op == OpDelete {
		b = u64(b, v.Time)
	}
	switch v.Op {
	case OpCreate:
		b = u16(append(b, v.Plugin), len(v.Credential))
		b = append(append(b, v.Credential...), v.Salt...)
		b = surbs(u64(b, v.Epoch))
	case OpPut:
		b = u16(surbs(b), len(v.Message))
		b = append(b, v.Message...)
	case OpStock:
		b = surbs(u64(b, v.Epoch))
	case OpFetch:
		b = surbs(u64(u64(b, v.After), v.Epoch))
	case OpDelete:
		b = append(u16(b, len(v.Filter)), v.Filter...)
	}
	b = append(b, v.Scheme)
	if !bytes.Equal(append([]byte("strata-mailbox-v2 request\x00"), b...), v.Signed) {
		return nil
	}
	b = u16(b, len(v.Auth))
	return append(b, v.Auth...)
}

// refusedVectors derives the encodings a decoder must refuse from the
// valid request vectors (create, put with a SURB, stock).
func refusedVectors(t *testing.T, c Codec, reqs []reqVector) []badVector {
	t.Helper()
	create, put, stock := reqs[0].Encoding, reqs[1].Encoding, reqs[3].Encoding
	with := func(b []byte, f func(b []byte) []byte) hexBytes { return hb(f(bytes.Clone(b))) }
	out := []badVector{
		{"version 1", with(put, func(b []byte) []byte { b[0] = 1; return b })},
		{"unknown op 6", with(put, func(b []byte) []byte { b[1] = 6; return b })},
		{"a put one byte short (auth length cut)", with(put, func(b []byte) []byte { return b[:len(b)-1] })},
		{"a put with a trailing byte", with(put, func(b []byte) []byte { return append(b, 0) })},
		{"a put with scheme 0 and 1 byte of authorization", with(put, func(b []byte) []byte {
			return append(b[:len(b)-2], 0, 1, 0xaa)
		})},
		{"a stock with scheme 0 (signed ops need an auth scheme)", with(stock, func(b []byte) []byte {
			b = b[:len(b)-64-3]
			return append(b, 0, 0, 0)
		})},
		{"a create with scheme 1", with(create, func(b []byte) []byte {
			b[len(b)-3] = 1
			return b
		})},
		{"a stock whose signature is one byte short of its length", with(stock, func(b []byte) []byte { return b[:len(b)-1] })},
		{"a stock claiming 6 SURBs", with(stock, func(b []byte) []byte { b[reqHeader+8+8] = 6; return b })},
		{"a request longer than max_size", hb(make([]byte, c.MaxSize+1))},
	}
	for _, v := range out {
		if _, _, err := c.DecodeRequest(v.Encoding); !errors.Is(err, ErrWire) {
			t.Fatalf("refused vector %q decodes: %v", v.Name, err)
		}
	}
	return out
}
