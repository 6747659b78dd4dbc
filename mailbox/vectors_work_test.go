package mailbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
)

// workVectors are two Puts of WorkScheme at difficulty DefaultPutWork: one
// with the first nonce (counting from 0) that has enough zero bits, one
// with the first nonce that has too few.
func workVectors(t *testing.T, c Codec, box ID, typ Type, surbs [][]byte) []workVector {
	t.Helper()
	const d = DefaultPutWork
	first := func(enough bool) func([]byte) ([]byte, error) {
		if enough {
			return Work{Bits: d}.Worker(context.Background(), box)
		}
		return func(signed []byte) ([]byte, error) {
			nonce := make([]byte, WorkNonceSize)
			for i := byte(0); WorkBits(box, signed, nonce) >= d; i++ {
				nonce[WorkNonceSize-1] = i
			}
			return nonce, nil
		}
	}
	var out []workVector
	for _, in := range []struct {
		name   string
		enough bool
	}{{"put with 16 bits of work (accepted)", true}, {"put with too little work (refused by a node requiring 16 bits)", false}} {
		r := &Request{Op: OpPut, Mailbox: box, Type: typ, SURBs: surbs, Message: []byte("Strata mailbox test vector: a worked put"), Scheme: WorkScheme}
		b, err := c.EncodeRequest(r, first(in.enough))
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		r, signed, err := c.DecodeRequest(b)
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		ph := sha256.Sum256(signed)
		wh := sha256.Sum256(append(workPrefix(box, signed), r.Auth...))
		out = append(out, workVector{Request: reqVectorOf(in.name, r, signed, b), Difficulty: d,
			PrefixHash: hb(ph[:]), WorkHash: hb(wh[:]), ZeroBits: zeroBits(&wh), Accepted: VerifyWork(box, signed, r.Auth, d) == nil})
	}
	if !out[0].Accepted || out[1].Accepted {
		t.Fatal("put work vectors: the positive one is refused or the negative one accepted")
	}
	return out
}

// checkWorkVector checks a put work vector against the codec, the
// documented layout and hash (computed here without workPrefix), and
// VerifyWork.
func checkWorkVector(t *testing.T, c Codec, v workVector) {
	rv := v.Request
	b, err := c.EncodeRequest(rv.request(), func([]byte) ([]byte, error) { return rv.Auth, nil })
	if err != nil || !bytes.Equal(b, rv.Encoding) {
		t.Fatalf("encodes to %x (%v), vector says %x", b, err, rv.Encoding)
	}
	r, signed, err := c.DecodeRequest(rv.Encoding)
	if err != nil || !bytes.Equal(signed, rv.Signed) || r.Scheme != WorkScheme || !bytes.Equal(r.Auth, rv.Auth) {
		t.Fatalf("decodes to scheme %d auth %x (%v)", r.Scheme, r.Auth, err)
	}
	if want := independentRequest(rv); !bytes.Equal(want, rv.Encoding) {
		t.Fatalf("the documented layout gives\n%x\nvector says\n%x", want, rv.Encoding)
	}
	if len(rv.Auth) != 8 {
		t.Fatalf("nonce of %d bytes", len(rv.Auth))
	}
	ph := sha256.Sum256(rv.Signed)
	in := append([]byte("strata-mailbox-v2 put work\x00"), rv.Mailbox...)
	in = append(append(in, ph[:]...), rv.Auth...)
	wh := sha256.Sum256(in)
	if !bytes.Equal(ph[:], v.PrefixHash) || !bytes.Equal(wh[:], v.WorkHash) {
		t.Fatalf("hashes %x, %x; vector says %x, %x", ph, wh, v.PrefixHash, v.WorkHash)
	}
	bits := 0
	for _, x := range wh {
		if x != 0 {
			for x&0x80 == 0 {
				bits++
				x <<= 1
			}
			break
		}
		bits += 8
	}
	if bits != v.ZeroBits || (bits >= v.Difficulty) != v.Accepted {
		t.Fatalf("%d zero bits (vector %d), accepted %v at %d", bits, v.ZeroBits, v.Accepted, v.Difficulty)
	}
	if ok := VerifyWork(ID(rv.Mailbox), rv.Signed, rv.Auth, v.Difficulty) == nil; ok != v.Accepted {
		t.Fatalf("VerifyWork says %v, vector says %v", ok, v.Accepted)
	}
}
