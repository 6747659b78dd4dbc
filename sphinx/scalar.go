package sphinx

import (
	"filippo.io/edwards25519"
	"github.com/cloudflare/circl/dh/x25519"
)

// The sender of a packet needs, for hop i, the shared secret
// sᵢ = X25519(x·b₀·…·bᵢ₋₁, pubᵢ) and the group element αᵢ = X25519(x·b₀·…·bᵢ₋₁, G),
// where the bⱼ are the blinding scalars the earlier hops apply. Doing that with
// X25519 alone costs i+1 scalar multiplications for hop i. Instead the sender
// multiplies the scalars modulo the group order ℓ and performs one X25519 per
// secret and per α. That needs the product as an X25519 scalar, which X25519
// clamps (bit 254 set, bits 0–2 and 255 clear): clampRep finds a clamped k with
// k ≡ ±t (mod ℓ). Both signs give the same X25519 output, because X25519 sees
// only the u-coordinate and u(−P) = u(P), and a multiple of 8 kills any small
// order part, so the result equals what the hops compute one blinding at a
// time. Such a k = 2²⁵⁴ + 8m exists with m < 2²⁵¹ for all but a 2⁻¹²⁵
// fraction of t; the sender redraws its secret in that case.

// scalarField holds the constants clampRep needs.
type scalarField struct {
	inv8   edwards25519.Scalar // 8⁻¹ mod ℓ
	two254 edwards25519.Scalar // 2²⁵⁴ mod ℓ
}

func newScalarField() *scalarField {
	var f scalarField
	var b [32]byte
	b[0] = 8
	eight, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic("sphinx: 8 is not a canonical scalar") // unreachable
	}
	f.inv8.Invert(eight)
	var wide [64]byte
	wide[31] = 0x40 // 2²⁵⁴, little-endian
	if _, err := f.two254.SetUniformBytes(wide[:]); err != nil {
		panic("sphinx: 64-byte input rejected") // unreachable
	}
	return &f
}

// clampedScalar returns the X25519 clamping of k reduced modulo ℓ.
func clampedScalar(k *[32]byte) *edwards25519.Scalar {
	var wide [64]byte
	copy(wide[:], k[:])
	wide[0] &= 248
	wide[31] = wide[31]&127 | 64
	s, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
	if err != nil {
		panic("sphinx: 64-byte input rejected") // unreachable
	}
	return s
}

// clampRep returns a clamped X25519 scalar k with k ≡ ±t (mod ℓ), or false
// when neither sign has one.
func (f *scalarField) clampRep(t *edwards25519.Scalar) (x25519.Key, bool) {
	for _, v := range [2]*edwards25519.Scalar{t, edwards25519.NewScalar().Negate(t)} {
		m := edwards25519.NewScalar().Subtract(v, &f.two254)
		m.Multiply(m, &f.inv8)
		mb := m.Bytes()
		if mb[31]&0xf8 != 0 { // m ≥ 2²⁵¹
			continue
		}
		var k x25519.Key
		var carry byte
		for i := range k {
			k[i] = mb[i]<<3 | carry
			carry = mb[i] >> 5
		}
		k[31] |= 0x40
		return k, true
	}
	return x25519.Key{}, false
}
