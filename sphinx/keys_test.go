package sphinx

import (
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
)

// lowOrderU are the u-coordinates of the points of Curve25519 (and its
// twist) of order dividing 8, canonically encoded: 0 (order 4), 1 (order
// 4 on the twist), the two points of order 8 and p−1 (order 2). X25519 of
// any of them with any clamped scalar is 0 (the list libsodium and
// RFC 7748 § 6.1 implementers refuse).
var lowOrderU = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

// lowOrderEncodings returns every 32-byte encoding of the low-order
// points: each canonical u, u + p where that is below 2^255 (X25519
// reduces u mod p), and each of those with bit 255 set (X25519 ignores
// it).
func lowOrderEncodings(t *testing.T) [][KeySize]byte {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	limit := new(big.Int).Lsh(big.NewInt(1), 255)
	var out [][KeySize]byte
	add := func(u *big.Int) {
		var le [KeySize]byte
		be := u.FillBytes(make([]byte, KeySize))
		for i := range le {
			le[i] = be[KeySize-1-i]
		}
		out = append(out, le)
		le[31] |= 0x80
		out = append(out, le)
	}
	for _, s := range lowOrderU {
		raw, err := hex.DecodeString(s)
		if err != nil || len(raw) != KeySize {
			t.Fatalf("bad vector %s", s)
		}
		be := make([]byte, KeySize)
		for i := range raw {
			be[i] = raw[KeySize-1-i]
		}
		u := new(big.Int).SetBytes(be)
		add(u)
		if v := new(big.Int).Add(u, p); v.Cmp(limit) < 0 {
			add(v)
		}
	}
	return out
}

func TestPublicKeyValidateRefusesLowOrderPoints(t *testing.T) {
	enc := lowOrderEncodings(t)
	// 5 canonical and 2 non-canonical below 2^255 (p and p+1), each also
	// with bit 255 set.
	if len(enc) != 14 {
		t.Fatalf("%d encodings, want 14", len(enc))
	}
	for _, k := range enc {
		if err := PublicKey(k).Validate(); !errors.Is(err, ErrGroupElement) {
			t.Errorf("low-order key %x: Validate = %v, want ErrGroupElement", k, err)
		}
	}
	rnd := testRand(31)
	for range 64 {
		_, pub, err := GenerateKey(rnd)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Validate(); err != nil {
			t.Fatalf("generated key %v refused: %v", pub, err)
		}
	}
}

func BenchmarkPublicKeyValidate(b *testing.B) {
	_, pub, err := GenerateKey(testRand(32))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
