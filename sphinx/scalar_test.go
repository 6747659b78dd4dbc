package sphinx

import (
	"bytes"
	"testing"

	"filippo.io/edwards25519"
	"github.com/cloudflare/circl/dh/x25519"
)

// TestClampRepMatchesScalarMultiplication checks the sender's shortcut against
// an independent implementation: X25519 with clampRep(t) must give the
// Montgomery u-coordinate of t·G computed on the Edwards curve.
func TestClampRepMatchesScalarMultiplication(t *testing.T) {
	field := newScalarField()
	rnd := testRand(30)
	negatives := 0
	for i := range 500 {
		var wide [64]byte
		rnd.Read(wide[:])
		s, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
		if err != nil {
			t.Fatal(err)
		}
		k, ok := field.clampRep(s)
		if !ok {
			t.Fatalf("scalar %d has no clamped representative", i)
		}
		if k[0]&7 != 0 || k[31]&0xc0 != 0x40 {
			t.Fatalf("representative %x is not clamped", k)
		}
		var got x25519.Key
		x25519.KeyGen(&got, &k)
		want := new(edwards25519.Point).ScalarBaseMult(s).BytesMontgomery()
		if !bytes.Equal(got[:], want) {
			t.Fatalf("scalar %d: X25519 gives %x, Edwards gives %x", i, got, want)
		}
		kWide := make([]byte, 64)
		copy(kWide, k[:])
		ks, _ := edwards25519.NewScalar().SetUniformBytes(kWide)
		if ks.Equal(s) != 1 {
			negatives++
		}
	}
	// About half the scalars need the negative representative.
	if negatives < 150 || negatives > 350 {
		t.Fatalf("%d of 500 scalars used the negative representative", negatives)
	}
}
