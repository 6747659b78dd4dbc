package pki

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cometbft/cometbft/crypto/merkle"
)

// The application hash commits to the whole state and makes the documents
// clients need provable on their own. It is the CometBFT simple Merkle root
// (RFC 6962 hashing) of four 32-byte leaves:
//
//	0  state chain: SHA-256(chainDomain ‖ previous chain ‖ height ‖ digest of the block's writes)
//	1  SHA-256 of the current epoch's EpochInfo encoding
//	2  SHA-256 of the current epoch's topology document (zeros if none)
//	3  SHA-256 of the next epoch's topology document (zeros until it freezes)
//
// A client that trusts a header at height H+1 (via the light client) and
// receives the four leaves and a document checks that the leaves hash to
// the header's AppHash and that the document's hash is leaf 2 or 3.
const (
	chainDomain   = "strata-pki-state-v1\x00"
	appHashLeaves = 4
	// ProofOpType names the proof of a query answer in
	// QueryResponse.ProofOps.
	ProofOpType = "strata/apphash-v1"
)

func nextChain(prev [32]byte, height int64, writes [32]byte) [32]byte {
	b := make([]byte, 0, len(chainDomain)+32+8+32)
	b = append(b, chainDomain...)
	b = append(b, prev[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(height))
	b = append(b, writes[:]...)
	return sha256.Sum256(b)
}

// leaves returns the application hash leaves of the state in s.
func leaves(s state, chain [32]byte) ([][]byte, error) {
	out := [][]byte{chain[:], make([]byte, 32), make([]byte, 32), make([]byte, 32)}
	v, ok := s.kv.get(keyEpoch)
	if !ok {
		return out, nil
	}
	h := sha256.Sum256(v)
	out[1] = h[:]
	ei, err := decodeEpochInfo(v)
	if err != nil {
		return nil, err
	}
	for i, e := range []uint64{ei.Epoch, ei.Epoch + 1} {
		if doc, ok := s.topology(e); ok {
			h := sha256.Sum256(doc)
			out[2+i] = h[:]
		}
	}
	return out, nil
}

func rootOf(leaves [][]byte) []byte { return merkle.HashFromByteSlices(leaves) }

func encodeLeaves(l [][]byte) []byte { return bytes.Join(l, nil) }

// VerifyProof checks that value is committed by appHash, given the leaves
// a query returned with it (ProofOp data): the leaves must hash to
// appHash, and SHA-256(value) must be one of the leaves that slots allows
// (1 for an EpochInfo, 2 or 3 for a topology document).
func verifyProof(appHash, proof, value []byte, slots ...int) error {
	if len(proof) != 32*appHashLeaves {
		return fmt.Errorf("pki: proof of %d bytes, want %d", len(proof), 32*appHashLeaves)
	}
	l := make([][]byte, appHashLeaves)
	for i := range l {
		l[i] = proof[32*i : 32*(i+1)]
	}
	if !bytes.Equal(rootOf(l), appHash) {
		return fmt.Errorf("pki: proof does not hash to the application hash %X", appHash)
	}
	h := sha256.Sum256(value)
	for _, s := range slots {
		if bytes.Equal(l[s], h[:]) {
			return nil
		}
	}
	return fmt.Errorf("pki: value %x is not committed by application hash %X", h[:8], appHash)
}
