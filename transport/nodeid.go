package transport

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// NodeID names a node: the SHA-256 digest of its raw 32-byte Ed25519 identity
// public key. Routing headers, the PKI and the pool all key nodes by NodeID.
type NodeID [32]byte

// NodeIDFromPublicKey returns the node id of an Ed25519 identity public key.
// It returns the zero NodeID when pub is not 32 bytes long.
func NodeIDFromPublicKey(pub ed25519.PublicKey) NodeID {
	if len(pub) != ed25519.PublicKeySize {
		return NodeID{}
	}
	return sha256.Sum256(pub)
}

// String returns the first 8 bytes of the id in hex, enough to tell nodes
// apart in logs. Use [NodeID.Hex] for the full id.
func (id NodeID) String() string {
	return hex.EncodeToString(id[:8])
}

// Hex returns the full id as 64 lowercase hex digits.
func (id NodeID) Hex() string {
	return hex.EncodeToString(id[:])
}

// IsZero reports whether id is the zero NodeID, which names no node.
func (id NodeID) IsZero() bool {
	return id == NodeID{}
}

// ParseNodeID parses the 64 hex digits written by [NodeID.Hex].
func ParseNodeID(s string) (NodeID, error) {
	var id NodeID
	if len(s) != 2*len(id) {
		return NodeID{}, fmt.Errorf("transport: node id %q: want %d hex digits, got %d", s, 2*len(id), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return NodeID{}, fmt.Errorf("transport: node id %q: %w", s, err)
	}
	return id, nil
}

// MarshalText encodes id as in [NodeID.Hex], so that ids read well in JSON,
// TOML and YAML.
func (id NodeID) MarshalText() ([]byte, error) {
	return []byte(id.Hex()), nil
}

// UnmarshalText decodes the form written by MarshalText.
func (id *NodeID) UnmarshalText(b []byte) error {
	v, err := ParseNodeID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// nodeIDOfLibp2pKey derives the NodeID of a libp2p public key; only Ed25519
// keys name Strata nodes.
func nodeIDOfLibp2pKey(k crypto.PubKey) (NodeID, error) {
	if k == nil {
		return NodeID{}, fmt.Errorf("transport: %w: no public key", ErrNotEd25519)
	}
	if k.Type() != crypto.Ed25519 {
		return NodeID{}, fmt.Errorf("transport: %w: key type %s", ErrNotEd25519, k.Type())
	}
	raw, err := k.Raw()
	if err != nil {
		return NodeID{}, fmt.Errorf("transport: raw public key: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return NodeID{}, fmt.Errorf("transport: %w: public key of %d bytes", ErrNotEd25519, len(raw))
	}
	return sha256.Sum256(raw), nil
}

// peerIDOfPublicKey returns the libp2p peer id of an Ed25519 public key.
func peerIDOfPublicKey(pub ed25519.PublicKey) (peer.ID, error) {
	k, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("transport: %w: %w", ErrNotEd25519, err)
	}
	id, err := peer.IDFromPublicKey(k)
	if err != nil {
		return "", fmt.Errorf("transport: peer id: %w", err)
	}
	return id, nil
}
