package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The anti-spam rule for intentions, the one transaction anybody may send:
// SHA-256 of a domain separator, the chain id and the unsigned intention
// (which holds the nonce and the epoch) must start with Params.PowBits zero
// bits. Binding the epoch means work cannot be stocked up in advance beyond
// one epoch; binding the identity key means each identity pays for itself.
// Every other transaction comes from a registered node or a validator and
// is limited per identity by the state machine (one VRF per epoch, one
// attestation per validator and node and epoch, immutable mix keys).
const powDomain = "strata-pki-pow-v1\x00"

// nonceOffset is where an intention's nonce sits in its unsigned encoding:
// after the header and the role byte.
const nonceOffset = txHeaderSize + 1

func powHash(chainID string, unsigned []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(powDomain))
	h.Write([]byte{uint8(len(chainID))})
	h.Write([]byte(chainID))
	h.Write(unsigned)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func leadingZeros(h [32]byte) int {
	n := 0
	for i := 0; i < len(h); i += 8 {
		w := binary.BigEndian.Uint64(h[i:])
		n += bits.LeadingZeros64(w)
		if w != 0 {
			break
		}
	}
	return n
}

// powOK reports whether an unsigned intention carries enough work.
func powOK(chainID string, unsigned []byte, powBits uint32) bool {
	return leadingZeros(powHash(chainID, unsigned)) >= int(powBits)
}

// NewIntention finds a proof of work of powBits bits for an intention of
// the node with identity key, then signs it. It stops early when ctx ends.
// Each extra bit doubles the expected work: 20 bits take about a million
// hashes.
func NewIntention(ctx context.Context, chainID string, epoch uint64, key ed25519.PrivateKey, role Role, addrs []string, powBits uint32) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("pki: intention: private key of %d bytes", len(key))
	}
	in := &Intention{Role: role, Addrs: addrs}
	if err := checkBody(in); err != nil {
		return nil, err
	}
	unsigned := encodeUnsigned(epoch, key.Public().(ed25519.PublicKey), in)
	for nonce := uint64(0); ; nonce++ {
		if nonce%4096 == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("pki: intention: proof of work: %w", ctx.Err())
		}
		binary.BigEndian.PutUint64(unsigned[nonceOffset:], nonce)
		if powOK(chainID, unsigned, powBits) {
			in.Nonce = nonce
			return SignTx(chainID, epoch, key, in)
		}
	}
}
