package client

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/strata-mix/strata/sphinx"
)

// HomeSecretSize is the size of a HomeSecret.
const HomeSecretSize = 32

// HomeSecret is what a client shares with its home relay, and with no one
// else: the key its delivery tokens derive from. Only the client and the
// home can compute the tokens, so only packets built from the client's own
// SURBs and loops reach it.
type HomeSecret [HomeSecretSize]byte

// Labels of the home secret, the tokens and the registration message.
const (
	homeSecretLabel = "strata-home-secret-v1"
	homeTokenLabel  = "strata-home-token-v2"
	// RegisterProtocol is the request protocol on which a client registers
	// its HomeSecret with its home relay after every (re)connect.
	RegisterProtocol = "/strata/home/register/1"
	// registerVersion is the first byte of a registration request.
	registerVersion = 1
	// RegisterSize is the exact size of a registration request.
	RegisterSize = 1 + len(sphinx.NodeID{}) + HomeSecretSize
)

// DeriveHomeSecret returns the secret of the client whose identity key is
// identity at home relay home:
//
//	HMAC-SHA256(key = identity seed (32 bytes), "strata-home-secret-v1" ‖ home id (32))
//
// It is deterministic, so a client that restarts (or reconnects) registers
// the same secret again and the SURBs it handed out stay valid; it differs
// per home, so two homes of one client cannot link their tokens, and it
// reveals nothing of the identity key.
func DeriveHomeSecret(identity ed25519.PrivateKey, home sphinx.NodeID) HomeSecret {
	m := hmac.New(sha256.New, identity.Seed())
	m.Write([]byte(homeSecretLabel))
	m.Write(home[:])
	var s HomeSecret
	copy(s[:], m.Sum(nil))
	return s
}

// Token returns the delivery token that SURBs and loops made under epoch's
// keys name at the home:
//
//	HMAC-SHA256(key = secret, "strata-home-token-v2" ‖ epoch (u64, big endian))[0:16]
func (s HomeSecret) Token(epoch uint64) sphinx.DeliveryToken {
	m := hmac.New(sha256.New, s[:])
	m.Write([]byte(homeTokenLabel))
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], epoch)
	m.Write(e[:])
	var t sphinx.DeliveryToken
	copy(t[:], m.Sum(nil))
	return t
}

// ErrRegister means a registration request is not laid out as
// EncodeRegister lays it out.
var ErrRegister = errors.New("client: malformed home registration")

// EncodeRegister returns the registration request a client sends its home
// on RegisterProtocol:
//
//	version (1 byte, = 1) ‖ home id (32) ‖ secret (32)
//
// The home id names the relay the secret is for; a home refuses a request
// naming another relay.
func EncodeRegister(home sphinx.NodeID, s HomeSecret) []byte {
	b := make([]byte, 0, RegisterSize)
	b = append(b, registerVersion)
	b = append(b, home[:]...)
	return append(b, s[:]...)
}

// ParseRegister parses a request written by EncodeRegister. It refuses any
// other length, another version, and an all-zero secret.
func ParseRegister(b []byte) (home sphinx.NodeID, s HomeSecret, err error) {
	if len(b) != RegisterSize {
		return home, s, fmt.Errorf("%w: %d bytes, want %d", ErrRegister, len(b), RegisterSize)
	}
	if b[0] != registerVersion {
		return home, s, fmt.Errorf("%w: version %d", ErrRegister, b[0])
	}
	copy(home[:], b[1:])
	copy(s[:], b[1+len(home):])
	if s == (HomeSecret{}) {
		return home, s, fmt.Errorf("%w: zero secret", ErrRegister)
	}
	return home, s, nil
}
