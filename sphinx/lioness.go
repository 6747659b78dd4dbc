package sphinx

import (
	"crypto/sha256"
	"hash"
)

// lionessKeys are the four round keys of one Lioness layer.
type lionessKeys [4][lionessKeySize]byte

// Lioness (Anderson and Biham) is a wide-block cipher over the whole payload:
// changing any bit of a ciphertext turns the whole plaintext into noise, so a
// tagging attacker destroys the payload rather than marking it. The block is
// split into L (32 bytes) and R (the rest); the stream cipher S is ChaCha20
// keyed by L ⊕ Kᵢ and the hash H is SHA-256 prefixed with the round key:
//
//	R ^= S(L ⊕ K1);  L ^= H(K2 ‖ R);  R ^= S(L ⊕ K3);  L ^= H(K4 ‖ R)
//
// sum is hash output space that must not live on the caller's stack.

func lionessEncrypt(h hash.Hash, k *lionessKeys, block []byte, sum *[sha256.Size]byte) {
	l, r := block[:lionessKeySize], block[lionessKeySize:]
	lionessStream(&k[0], l, r)
	lionessHash(h, &k[1], l, r, sum)
	lionessStream(&k[2], l, r)
	lionessHash(h, &k[3], l, r, sum)
}

func lionessDecrypt(h hash.Hash, k *lionessKeys, block []byte, sum *[sha256.Size]byte) {
	l, r := block[:lionessKeySize], block[lionessKeySize:]
	lionessHash(h, &k[3], l, r, sum)
	lionessStream(&k[2], l, r)
	lionessHash(h, &k[1], l, r, sum)
	lionessStream(&k[0], l, r)
}

// lionessStream XORs r with ChaCha20 key stream under l ⊕ k.
func lionessStream(k *[lionessKeySize]byte, l, r []byte) {
	var key [32]byte
	subtleXOR(key[:], l, k[:])
	xorKeyStream(&key, r)
}

// lionessHash XORs l with SHA-256(k ‖ r).
func lionessHash(h hash.Hash, k *[lionessKeySize]byte, l, r []byte, sum *[sha256.Size]byte) {
	h.Reset()
	h.Write(k[:])
	h.Write(r)
	h.Sum(sum[:0])
	subtleXOR(l, l, sum[:])
}

// expandLioness derives a Lioness layer's round keys from a 32-byte key:
// ChaCha20(key = SHA-256(surbKeyLabel ‖ key), nonce = 0), 128 bytes.
func expandLioness(key *[SURBKeySize]byte, k *lionessKeys) {
	prk := labelledHash(surbKeyLabel, key)
	var buf [4 * lionessKeySize]byte
	keyStream(&prk, buf[:])
	for i := range k {
		copy(k[i][:], buf[i*lionessKeySize:])
	}
}
