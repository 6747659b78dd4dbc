package mailbox

import (
	"crypto/ed25519"
	"errors"
	"fmt"
)

// Authenticator is an auth plug-in: it decides who may create a mailbox and
// who may act on one (stock SURBs, fetch, delete). Anyone may put a message
// in a mailbox; that is what a mailbox is for.
//
// The default plug-in, Ed25519Auth, gives each mailbox its own Ed25519 key:
// the node learns the key, never the user behind it, and two mailboxes of
// one user are unlinkable. Group signatures (VLR) fit the same interface: the
// enrolled data is the group's public key and revocation list, and Verify
// checks a group signature, so the node cannot even link two requests to
// one mailbox key.
type Authenticator interface {
	// ID is the plug-in's one-byte id on the wire.
	ID() byte
	// Enroll checks the credential a create request carries and returns
	// what the node stores for the mailbox.
	Enroll(credential []byte) (stored []byte, err error)
	// Verify checks that auth (a request's Auth, of any length up to
	// MaxAuth: the codec does not know the plug-in's sizes) authorizes
	// msg for a mailbox enrolled with stored.
	Verify(stored, msg, auth []byte) error
}

// ErrAuth means a request's authorization did not verify.
var ErrAuth = errors.New("mailbox: not authorized")

// Ed25519Auth is the default auth plug-in (id 1): a per-mailbox Ed25519 key;
// a request's Auth is a 64-byte Ed25519 signature of its SignedBytes.
type Ed25519Auth struct{}

// Ed25519Signer returns the sign function of EncodeRequest for key.
func Ed25519Signer(key ed25519.PrivateKey) func([]byte) ([]byte, error) {
	return func(msg []byte) ([]byte, error) { return ed25519.Sign(key, msg), nil }
}

// ID returns 1.
func (Ed25519Auth) ID() byte { return 1 }

// Enroll accepts a 32-byte Ed25519 public key.
func (Ed25519Auth) Enroll(cred []byte) ([]byte, error) {
	if len(cred) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrAuth, len(cred))
	}
	return append([]byte(nil), cred...), nil
}

// Verify checks an Ed25519 signature by the enrolled key.
func (Ed25519Auth) Verify(stored, msg, sig []byte) error {
	if len(stored) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize || !ed25519.Verify(stored, msg, sig) {
		return ErrAuth
	}
	return nil
}
