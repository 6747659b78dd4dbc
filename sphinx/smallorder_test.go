package sphinx

import (
	"errors"
	"math/big"
	"slices"
	"testing"

	"filippo.io/edwards25519"
	"github.com/cloudflare/circl/dh/x25519"
	"golang.org/x/crypto/curve25519"
)

// curveP is 2^255 − 19; curveA is Curve25519's Montgomery coefficient.
func curveP() *big.Int {
	return new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
}

const curveA = 486662

// leToInt reads a 32-byte little-endian string.
func leToInt(b [KeySize]byte) *big.Int {
	be := make([]byte, KeySize)
	for i := range b {
		be[i] = b[KeySize-1-i]
	}
	return new(big.Int).SetBytes(be)
}

// intToLE encodes 0 ≤ u < 2^256 as 32 little-endian bytes.
func intToLE(u *big.Int) [KeySize]byte {
	be := u.FillBytes(make([]byte, KeySize))
	var le [KeySize]byte
	for i := range le {
		le[i] = be[KeySize-1-i]
	}
	return le
}

// validateByLadder is Validate as it was before this file: circl's
// x25519.Shared with the scalar 1 (clamped to 2^254), which runs a full
// Montgomery ladder and reports false for circl's own list of small-order
// points. The reference the new Validate is checked against.
func validateByLadder(p PublicKey) error {
	var probe, one x25519.Key
	one[0] = 1
	if !x25519.Shared(&probe, &one, (*x25519.Key)(&p)) {
		return ErrGroupElement
	}
	return nil
}

// orderDivides8 computes, independently of any list, whether the point
// with u-coordinate key (read as X25519 reads it: bit 255 ignored, reduced
// mod p) on Curve25519 or its twist satisfies [8]P = O: three x-only
// doublings (X, Z) → ((X² − Z²)², 4XZ(X² + AXZ + Z²)) from (u, 1), then
// Z = 0.
func orderDivides8(key [KeySize]byte) bool {
	p := curveP()
	key[KeySize-1] &= 0x7f
	x := new(big.Int).Mod(leToInt(key), p)
	z := big.NewInt(1)
	a := big.NewInt(curveA)
	for range 3 {
		x2 := new(big.Int).Mul(x, x)
		z2 := new(big.Int).Mul(z, z)
		xz := new(big.Int).Mul(x, z)
		nx := new(big.Int).Sub(x2, z2)
		nx.Mul(nx, nx).Mod(nx, p)
		nz := new(big.Int).Mul(a, xz)
		nz.Add(nz, x2).Add(nz, z2).Mul(nz, xz).Lsh(nz, 2).Mod(nz, p)
		x, z = nx, nz
	}
	return z.Sign() == 0
}

// quadRoots returns the roots in F_p of x² + bx + c.
func quadRoots(b, c *big.Int) []*big.Int {
	p := curveP()
	disc := new(big.Int).Mul(b, b)
	disc.Sub(disc, new(big.Int).Lsh(c, 2)).Mod(disc, p)
	s := new(big.Int).ModSqrt(disc, p)
	if s == nil {
		return nil
	}
	half := new(big.Int).ModInverse(big.NewInt(2), p)
	var out []*big.Int
	for _, r := range []*big.Int{new(big.Int).Sub(s, b), new(big.Int).Neg(new(big.Int).Add(s, b))} {
		r.Mul(r, half).Mod(r, p)
		if !slices.ContainsFunc(out, func(o *big.Int) bool { return o.Cmp(r) == 0 }) {
			out = append(out, r)
		}
	}
	return out
}

// halves returns every x in F_p with u([2]P) = t, where P has u = x:
// (x² − 1)² = 4t·x(x² + Ax + 1). x = 0 maps to O, not to t, and the
// quartic is palindromic, so with w = x + 1/x it is w² − 4tw − 4(1 + tA)
// = 0, then x² − wx + 1 = 0.
func halves(t *big.Int) []*big.Int {
	p := curveP()
	b := new(big.Int).Mul(big.NewInt(-4), t)
	c := new(big.Int).Mul(t, big.NewInt(curveA))
	c.Add(c, big.NewInt(1)).Mul(c, big.NewInt(-4))
	var out []*big.Int
	for _, w := range quadRoots(b.Mod(b, p), c.Mod(c, p)) {
		out = append(out, quadRoots(new(big.Int).Neg(w), big.NewInt(1))...)
	}
	return out
}

// TestSmallOrderListIsDerived derives from the curve equation the
// u-coordinates of every point of order dividing 8 on Curve25519 and its
// twist, and checks that they are exactly lowOrderU and that the
// blocklist Validate uses is exactly their encodings below 2^255.
func TestSmallOrderListIsDerived(t *testing.T) {
	p := curveP()
	// [2]P = O only for u = 0: x² + Ax + 1 has no root.
	if r := quadRoots(big.NewInt(curveA), big.NewInt(1)); len(r) != 0 {
		t.Fatalf("x² + Ax + 1 has roots %v", r)
	}
	derived := []*big.Int{big.NewInt(0)}
	frontier := derived
	for range 2 { // order 4, then order 8
		var next []*big.Int
		for _, u := range frontier {
			next = append(next, halves(u)...)
		}
		derived = append(derived, next...)
		frontier = next
	}
	var got []string
	for _, u := range derived {
		got = append(got, PublicKey(intToLE(u)).String())
	}
	want := slices.Clone(lowOrderU)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("derived small-order u:\n%v\nlowOrderU:\n%v", got, want)
	}
	for _, u := range derived {
		if !orderDivides8(intToLE(u)) {
			t.Errorf("u = %v: [8]P ≠ O", u)
		}
	}

	// Cross-check the curve's part on Edwards25519: T = Q − [8⁻¹][8]Q is
	// Q's torsion component; a Q whose T has order 8 gives all 8 torsion
	// points as multiples of T, with u = (1 + y)/(1 − y).
	var inv8 edwards25519.Scalar
	eight := [32]byte{8}
	if _, err := inv8.SetCanonicalBytes(eight[:]); err != nil {
		t.Fatal(err)
	}
	inv8.Invert(&inv8)
	rnd := testRand(61)
	var torsion *edwards25519.Point
	for torsion == nil {
		var enc [32]byte
		rnd.Read(enc[:])
		q, err := new(edwards25519.Point).SetBytes(enc[:])
		if err != nil {
			continue
		}
		r := new(edwards25519.Point).ScalarMult(&inv8, new(edwards25519.Point).MultByCofactor(q))
		tp := new(edwards25519.Point).Subtract(q, r)
		four := new(edwards25519.Point).Add(tp, tp)
		four.Add(four, four)
		if four.Equal(edwards25519.NewIdentityPoint()) == 0 {
			torsion = tp
		}
	}
	curveU := map[string]bool{}
	m := edwards25519.NewIdentityPoint()
	for range 8 {
		m.Add(m, torsion)
		curveU[PublicKey(m.BytesMontgomery()).String()] = true
	}
	if m.Equal(edwards25519.NewIdentityPoint()) != 1 {
		t.Fatal("[8]T ≠ O")
	}
	// O and (0, −1) both map to u = 0; the other 6 to 1 and the order-8 u.
	if len(curveU) != 4 {
		t.Fatalf("curve torsion has %d u-coordinates, want 4", len(curveU))
	}
	for u := range curveU {
		if !slices.Contains(lowOrderU, u) {
			t.Errorf("curve torsion u %s not in lowOrderU", u)
		}
	}

	// The blocklist: every encoding below 2^255 of a derived u, no other.
	var below []string
	for _, u := range derived {
		for v := new(big.Int).Set(u); v.BitLen() <= 255 && v.Bit(255) == 0; v.Add(v, p) {
			below = append(below, PublicKey(intToLE(v)).String())
		}
	}
	var list []string
	for _, e := range smallOrderEncodings() {
		list = append(list, PublicKey(e).String())
	}
	slices.Sort(below)
	slices.Sort(list)
	if !slices.Equal(below, list) {
		t.Fatalf("encodings below 2^255:\n%v\nsmallOrderEncodings:\n%v", below, list)
	}
}

// validateProbes returns the keys on which Validate is compared with the
// ladder: the 14 small-order encodings, each of them with one bit flipped,
// u = 0 … 1023 and 2^255 − 1024 … 2^255 − 1 (the non-canonical range and
// its neighbours) each with and without bit 255, and n random keys.
func validateProbes(t *testing.T, n int) [][KeySize]byte {
	out := lowOrderEncodings(t)
	for _, e := range lowOrderEncodings(t) {
		for bit := range 8 * KeySize {
			f := e
			f[bit/8] ^= 1 << (bit % 8)
			out = append(out, f)
		}
	}
	top := new(big.Int).Lsh(big.NewInt(1), 255)
	for i := range int64(1024) {
		for _, u := range []*big.Int{big.NewInt(i), new(big.Int).Sub(top, big.NewInt(i+1))} {
			e := intToLE(u)
			out = append(out, e)
			e[KeySize-1] |= 0x80
			out = append(out, e)
		}
	}
	rnd := testRand(62)
	for range n {
		var k [KeySize]byte
		rnd.Read(k[:])
		out = append(out, k)
	}
	return out
}

// TestPublicKeyValidateMatchesLadder checks that Validate refuses exactly
// the keys the old circl-based check refused, exactly those for which
// x/crypto's X25519 with scalar 1 (clamped) outputs all-zero (on all but
// the last 95,000 random keys), and exactly those whose point has order
// dividing 8, on validateProbes with 100,000 random keys.
func TestPublicKeyValidateMatchesLadder(t *testing.T) {
	refused := map[[KeySize]byte]bool{}
	probes := validateProbes(t, 100_000)
	structured := len(probes) - 100_000
	for i, k := range probes {
		got := PublicKey(k).Validate()
		old := validateByLadder(PublicKey(k))
		if (got == nil) != (old == nil) {
			t.Fatalf("key %x: Validate = %v, ladder = %v", k, got, old)
		}
		// x/crypto's X25519 (another implementation) fails exactly when
		// the output is all-zero; it is slow under -race, so it sees the
		// structured probes and the first 5,000 random keys.
		if i < structured+5000 {
			one := make([]byte, KeySize)
			one[0] = 1
			if _, err := curve25519.X25519(one, k[:]); (err == nil) != (got == nil) {
				t.Fatalf("key %x: Validate = %v, x/crypto X25519 = %v", k, got, err)
			}
		}
		if got != nil && !errors.Is(got, ErrGroupElement) {
			t.Fatalf("key %x: Validate = %v, want ErrGroupElement", k, got)
		}
		if small := orderDivides8(k); small != (got != nil) {
			t.Fatalf("key %x: [8]P = O is %v, Validate = %v", k, small, got)
		}
		if got != nil {
			refused[k] = true
		}
	}
	// Exactly the 14 small-order encodings (some bit flips and some of the
	// small and top values are among them again).
	if len(refused) != 14 {
		t.Fatalf("%d distinct keys refused, want 14", len(refused))
	}
}

func BenchmarkPublicKeyValidateLadder(b *testing.B) {
	_, pub, err := GenerateKey(testRand(32))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := validateByLadder(pub); err != nil {
			b.Fatal(err)
		}
	}
}
