package sphinx

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/strata-mix/strata/internal/testvec"
	"golang.org/x/crypto/chacha20"
)

// docReplyKeys is reply keys as docs/sphinx.md ("Reply keys (format 2)")
// lays them out, decoded without the package's code.
type docReplyKeys struct {
	id     []byte
	key    []byte   // k̃
	layers [][]byte // Lᵢ = K1ᵢ ‖ K2ᵢ ‖ K3ᵢ ‖ K4ᵢ
}

// docDecodeReplyKeys decodes a record by the document's rules alone: first
// byte 2, 1 ≤ n ≤ 16, length exactly 50 + 128·n.
func docDecodeReplyKeys(b []byte) (*docReplyKeys, bool) {
	if len(b) < 50 || b[0] != 2 {
		return nil, false
	}
	n := int(b[17])
	if n < 1 || n > 16 || len(b) != 50+128*n {
		return nil, false
	}
	k := &docReplyKeys{id: b[1:17], key: b[18:50]}
	for i := range n {
		k.layers = append(k.layers, b[50+128*i:50+128*(i+1)])
	}
	return k, true
}

// docStream is S(k): ChaCha20 key stream under k with a zero nonce, XORed
// into dst.
func docStream(t *testing.T, k, dst []byte) {
	c, err := chacha20.NewUnauthenticatedCipher(k, make([]byte, chacha20.NonceSize))
	if err != nil {
		t.Fatal(err)
	}
	c.XORKeyStream(dst, dst)
}

// docLioness applies the document's Lioness with round keys ks (128 bytes)
// to p in place.
func docLioness(t *testing.T, ks, p []byte, decrypt bool) {
	l, r := p[:32], p[32:]
	s := func(k []byte) {
		var x [32]byte
		for i := range x {
			x[i] = l[i] ^ k[i]
		}
		docStream(t, x[:], r)
	}
	h := func(k []byte) {
		sum := sha256.Sum256(append(bytes.Clone(k), r...))
		for i := range l {
			l[i] ^= sum[i]
		}
	}
	k1, k2, k3, k4 := ks[0:32], ks[32:64], ks[64:96], ks[96:128]
	if decrypt {
		h(k4)
		s(k3)
		h(k2)
		s(k1)
		return
	}
	s(k1)
	h(k2)
	s(k3)
	h(k4)
}

// docOpenReply opens a delivered reply payload as the document says:
// Lioness-Encrypt with the keys of hops n−1 … 0, then Lioness-Decrypt with
// K̃ (the first 128 bytes of ChaCha20 under SHA-256("strata-sphinx-v1 surb
// key" ‖ k̃)), then a zero 16-byte tag.
func docOpenReply(t *testing.T, k *docReplyKeys, payload []byte) ([]byte, bool) {
	p := bytes.Clone(payload)
	for i := len(k.layers) - 1; i >= 0; i-- {
		docLioness(t, k.layers[i], p, false)
	}
	prk := sha256.Sum256(append([]byte("strata-sphinx-v1 surb key"), k.key...))
	kt := make([]byte, 128)
	docStream(t, prk[:], kt)
	docLioness(t, kt, p, true)
	if !bytes.Equal(p[:16], make([]byte, 16)) {
		return nil, false
	}
	return p[16:], true
}

// TestVectorReplyKeysFromTheDocument decodes every SURB vector's reply keys
// and opens its delivered reply with an implementation written from
// docs/sphinx.md alone (layout, Lioness, the K̃ derivation; x/crypto's
// ChaCha20 and SHA-256), and checks it against the package: the same
// message as the vector's "opened", the same verdicts as UnmarshalBinary on
// the record and on invalid records made from it (another version byte, a
// format-1 record, a wrong hop count, a byte short or over), and a
// tampered payload refused by both.
func TestVectorReplyKeysFromTheDocument(t *testing.T) {
	f := testFormat(t)
	var vf vectorFile
	testvec.Load(t, vectorsPath, false, nil, &vf)
	n := 0
	for _, c := range vf.Cases {
		if c.Kind != "surb" {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			rk := []byte(c.ReplyKeys)
			dk, ok := docDecodeReplyKeys(rk)
			if !ok {
				t.Fatal("the document's decoder refuses the vector's reply keys")
			}
			delivered := []byte(c.Steps[len(c.Steps)-1].Output)
			got, ok := docOpenReply(t, dk, delivered)
			if !ok {
				t.Fatal("the document's OpenReply finds a non-zero tag")
			}
			mustEqual(t, "opened from the document", got, c.Opened)

			tampered := bytes.Clone(delivered)
			tampered[len(tampered)-1] ^= 1
			if _, ok := docOpenReply(t, dk, tampered); ok {
				t.Fatal("the document's OpenReply accepts a tampered payload")
			}
			var k ReplyKeys
			if err := k.UnmarshalBinary(rk); err != nil {
				t.Fatal(err)
			}
			if _, err := f.OpenReply(&k, tampered); !errors.Is(err, ErrPayloadTag) {
				t.Fatalf("OpenReply of a tampered payload: %v, want ErrPayloadTag", err)
			}

			hops := int(rk[17])
			formatOne := append(bytes.Clone(rk[1:50]), make([]byte, 32*hops)...)
			with := func(i int, v byte) []byte { b := bytes.Clone(rk); b[i] = v; return b }
			for name, b := range map[string][]byte{
				"version 1": with(0, 1), "version 3": with(0, 3), "version 0": with(0, 0),
				"format 1": formatOne, "zero hops": with(17, 0), "one hop more": with(17, byte(hops+1)),
				"17 hops": with(17, 17), "a byte short": rk[:len(rk)-1], "a byte over": append(bytes.Clone(rk), 0),
				"a layer short": rk[:len(rk)-128], "empty": nil,
			} {
				_, docOK := docDecodeReplyKeys(b)
				err := new(ReplyKeys).UnmarshalBinary(b)
				if docOK || err == nil {
					t.Errorf("%s: the document accepts it %v, UnmarshalBinary: %v; both must refuse", name, docOK, err)
				}
				if wantVersion := len(b) > 0 && (b[0] != 2 || name == "format 1"); wantVersion != errors.Is(err, ErrReplyKeysVersion) {
					t.Errorf("%s: %v, want ErrReplyKeysVersion %v", name, err, wantVersion)
				}
			}
		})
	}
	if n == 0 {
		t.Fatal("no SURB vector")
	}
}
