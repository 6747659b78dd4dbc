package sphinx

import (
	"encoding/hex"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x25519"
)

// PrivateKey is a node's X25519 mix key for one key epoch.
type PrivateKey [KeySize]byte

// PublicKey is the public half of a [PrivateKey], published in the PKI.
type PublicKey [KeySize]byte

// GenerateKey returns a new key pair drawn from rand.
func GenerateKey(rand io.Reader) (*PrivateKey, PublicKey, error) {
	var k PrivateKey
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return nil, PublicKey{}, fmt.Errorf("sphinx: generate key: %w", err)
	}
	return &k, k.Public(), nil
}

// Public returns the public key of k.
func (k *PrivateKey) Public() PublicKey {
	var pub x25519.Key
	x25519.KeyGen(&pub, (*x25519.Key)(k))
	return PublicKey(pub)
}

// String returns the key in hex.
func (p PublicKey) String() string { return hex.EncodeToString(p[:]) }

// Validate reports whether p can form a shared secret: a point of order
// dividing 8 cannot (X25519 of it with any clamped scalar is all-zero).
// It refuses exactly the 14 encodings of such points (5 canonical
// u-coordinates, p and p + 1, each with bit 255 clear or set), the same
// set x25519.Shared refuses, by comparison alone: no scalar multiplication.
func (p PublicKey) Validate() error {
	if hasSmallOrder((*[KeySize]byte)(&p)) {
		return smallOrderError(p)
	}
	return nil
}

// smallOrderError is Validate's error, apart so that only a refused key is
// copied to the heap.
func smallOrderError(p PublicKey) error {
	return fmt.Errorf("%w: public key %x has small order", ErrGroupElement, p[:8])
}
