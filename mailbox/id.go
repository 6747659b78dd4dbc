package mailbox

import (
	"crypto/sha256"
	"encoding/binary"
)

// SaltSize is the size of the salt a mailbox id is derived with.
const SaltSize = 16

// Salt makes ids of mailboxes enrolled with the same credential differ
// (a plug-in whose credential is shared, such as a group key, needs a
// random one; a per-mailbox key may use the zero salt).
type Salt [SaltSize]byte

// DeriveID returns the id of the mailbox of type typ enrolled with plug-in
// plugin and credential under salt: the first 16 bytes of
//
//	SHA-256("strata-mailbox-v2 id\x00" ‖ type (2) ‖ plug-in (1) ‖
//	        credential length (2) ‖ credential ‖ salt (16))
//
// A node creates a mailbox only under the id its create request derives
// to, so nobody but the holder of the credential can create (or probe by
// creating) a mailbox whose id it learnt.
func DeriveID(typ Type, plugin byte, credential []byte, salt Salt) ID {
	h := sha256.New()
	h.Write([]byte("strata-mailbox-v2 id\x00"))
	var b [5]byte
	binary.BigEndian.PutUint16(b[:], uint16(typ))
	b[2] = plugin
	binary.BigEndian.PutUint16(b[3:], uint16(len(credential)))
	h.Write(b[:])
	h.Write(credential)
	h.Write(salt[:])
	return ID(h.Sum(nil)[:IDSize])
}

// Ed25519ID is DeriveID for the default plug-in with public key pub and the
// zero salt: the id an Owner with Key and no Salt creates.
func Ed25519ID(typ Type, pub []byte) ID {
	return DeriveID(typ, Ed25519Auth{}.ID(), pub, Salt{})
}
