package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"

	voied25519 "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519/extra/ecvrf"
)

// VRFProofSize is the size of an ECVRF-EDWARDS25519-SHA512-ELL2 proof.
const VRFProofSize = ecvrf.ProofSize

// vrfDomain prefixes the beacon to form the VRF input (alpha), so the
// identity key's VRF outputs on beacons are never VRF outputs on anything
// else.
const vrfDomain = "strata-pki-vrf-v1\x00"

func vrfAlpha(beacon [32]byte) []byte {
	return append([]byte(vrfDomain), beacon[:]...)
}

// ProveVRF returns the relay's ECVRF (RFC 9381, suite
// ECVRF-EDWARDS25519-SHA512-ELL2) proof on beacon, made with its Ed25519
// identity key, as a VRF transaction body. The proof's nonce is hedged with
// 32 bytes from crypto/rand (ProveVRFWith).
func ProveVRF(key ed25519.PrivateKey, beacon [32]byte) (*VRFSubmission, error) {
	return ProveVRFWith(rand.Reader, key, beacon)
}

// ProveVRFWith is ProveVRF with the nonce's added randomness read from r
// (curve25519-voi ecvrf.ProveWithAddedRandomness): the nonce is
// SHA-512(32 bytes of r ‖ the key's nonce half ‖ 960 zero bytes ‖ the
// point H), not RFC 9381's SHA-512(nonce half ‖ H) — which is exactly the
// nonce of an Ed25519 signature by the same key on the 32-byte message H —
// so no VRF nonce is derived the way the identity key's signatures derive
// theirs. The proof differs with r; the output does not. Only test vectors
// pass a reader other than crypto/rand.
func ProveVRFWith(r io.Reader, key ed25519.PrivateKey, beacon [32]byte) (*VRFSubmission, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("pki: vrf: private key of %d bytes", len(key))
	}
	if r == nil {
		return nil, fmt.Errorf("pki: vrf: no randomness")
	}
	pi, err := ecvrf.ProveWithAddedRandomness(r, voied25519.PrivateKey(key), vrfAlpha(beacon))
	if err != nil {
		return nil, fmt.Errorf("pki: vrf: %w", err)
	}
	s := &VRFSubmission{Beacon: beacon}
	copy(s.Proof[:], pi)
	return s, nil
}

// VerifyVRF checks a proof against the relay's identity key and the beacon
// and returns the VRF output.
func VerifyVRF(pub [ed25519.PublicKeySize]byte, beacon [32]byte, proof [VRFProofSize]byte) ([VRFOutputSize]byte, bool) {
	var out [VRFOutputSize]byte
	ok, beta := ecvrf.Verify(voied25519.PublicKey(pub[:]), proof[:], vrfAlpha(beacon))
	if !ok || len(beta) != VRFOutputSize {
		return out, false
	}
	copy(out[:], beta)
	return out, true
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
