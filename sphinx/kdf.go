package sphinx

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"hash"

	"golang.org/x/crypto/chacha20"
)

// Labels separate the uses of SHA-256 in the format (docs/sphinx.md).
const (
	hopKeyLabel  = "strata-sphinx-v1 hop key"
	surbKeyLabel = "strata-sphinx-v1 surb key"
)

const lionessKeySize = 32

// hopKeys is everything one hop derives from its shared secret s. The sender
// derives the same values for every hop of the path.
type hopKeys struct {
	header  [32]byte // ChaCha20 key of the routing-information stream
	mac     [32]byte // header MAC key
	lioness lionessKeys
	blind   [32]byte // blinding scalar, clamped by X25519
	replay  [ReplayTagSize]byte
	delay   uint64 // the hop's delay draw, see DelayPolicy.Sample
}

// hopStreamSize is the number of key-stream bytes hopKeys consumes, in order:
// header, mac, lioness (4×32), blind, replay, delay (8).
const hopStreamSize = 32 + 32 + 4*lionessKeySize + 32 + ReplayTagSize + 8

// deriveHopKeys expands the shared secret s into the hop's keys:
// ChaCha20(key = SHA-256(hopKeyLabel ‖ s), nonce = 0) read in hopKeys order.
func deriveHopKeys(s *[32]byte, k *hopKeys) {
	prk := hopPRK(s)
	expandHopKeys(&prk, k)
}

// hopPRK returns the hop's pseudo-random key SHA-256(hopKeyLabel ‖ s).
func hopPRK(s *[32]byte) [32]byte { return labelledHash(hopKeyLabel, s) }

// expandHopKeys reads the hop's keys from the ChaCha20 stream under prk.
func expandHopKeys(prk *[32]byte, k *hopKeys) {
	var buf [hopStreamSize]byte
	keyStream(prk, buf[:])
	b := buf[:]
	b = b[copy(k.header[:], b):]
	b = b[copy(k.mac[:], b):]
	for i := range k.lioness {
		b = b[copy(k.lioness[i][:], b):]
	}
	b = b[copy(k.blind[:], b):]
	b = b[copy(k.replay[:], b):]
	k.delay = binary.LittleEndian.Uint64(b)
}

// labelledHash returns SHA-256(label ‖ key).
func labelledHash(label string, key *[32]byte) [32]byte {
	var in [64]byte
	n := copy(in[:], label)
	n += copy(in[n:], key[:])
	return sha256.Sum256(in[:n])
}

// keyStream fills dst with ChaCha20 key stream under key and a zero nonce.
func keyStream(key *[32]byte, dst []byte) {
	clear(dst)
	xorKeyStream(key, dst)
}

// xorKeyStream XORs dst with ChaCha20 key stream under key and a zero nonce.
func xorKeyStream(key *[32]byte, dst []byte) {
	var nonce [chacha20.NonceSize]byte
	c, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
	if err != nil {
		panic("sphinx: chacha20 rejected a 32-byte key: " + err.Error()) // unreachable: sizes are constant
	}
	c.XORKeyStream(dst, dst)
}

// headerMAC computes γ = SHA-256(macKey ‖ β)[:16] into sum[:MACSize]. Every
// β of a geometry has the same length, so the prefix-keyed hash cannot be
// extended into another valid input. The MAC leaves α out, as in Sphinx: a
// changed α yields another shared secret, hence other keys, unless it differs
// only by a small-order point or in its encoding, and such an α is processed
// exactly like the original (same secret, same replay tag, same blinded α). key and sum must not live on
// the caller's stack (they escape through the hash.Hash interface).
func headerMAC(h hash.Hash, key *[32]byte, beta []byte, sum *[sha256.Size]byte) {
	h.Reset()
	h.Write(key[:])
	h.Write(beta)
	h.Sum(sum[:0])
}

// macEqual compares MACs in constant time.
func macEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
