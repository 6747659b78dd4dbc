package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
)

// CipherSuite is an MLS cipher suite number (RFC 9420 §17.1).
type CipherSuite uint16

// Suite is Strata's default and only enabled cipher suite:
// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519. See docs/e2e.md for the
// post-quantum suite that could follow.
const Suite CipherSuite = 1

// Kind is what an MLS message carries.
type Kind uint8

// Message kinds (the MLS content types).
const (
	KindApplication Kind = 1
	KindProposal    Kind = 2
	KindCommit      Kind = 3
	KindWelcome     Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindApplication:
		return "application"
	case KindProposal:
		return "proposal"
	case KindCommit:
		return "commit"
	case KindWelcome:
		return "welcome"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Errors returned for bad input. Every one leaves the group state as it was.
var (
	ErrMalformed         = errors.New("e2e: malformed message")
	ErrWrongGroup        = errors.New("e2e: message for another group")
	ErrNotMember         = errors.New("e2e: sender is not a member")
	ErrReplay            = errors.New("e2e: replayed message")
	ErrStaleEpoch        = errors.New("e2e: message from an epoch we no longer hold")
	ErrFutureEpoch       = errors.New("e2e: message from a future epoch")
	ErrCommitLost        = errors.New("e2e: commit lost the epoch tie-break")
	ErrUnsolicited       = errors.New("e2e: welcome for a key package we did not issue")
	ErrRejected          = errors.New("e2e: rejected by MLS")
	ErrRemoved           = errors.New("e2e: we are no longer a member of this group")
	ErrUnknownGroup      = errors.New("e2e: unknown group")
	ErrUnknownContact    = errors.New("e2e: unknown contact")
	ErrNoKeyPackage      = errors.New("e2e: contact card has no unused key package")
	ErrWrongPassphrase   = errors.New("e2e: wrong passphrase or corrupted store")
	ErrWelcomeNotAllowed = errors.New("e2e: welcome from a sender we do not accept")
)

// Identity is a user's long-term identity: an Ed25519 key (which is also
// the MLS signature key of every leaf the user occupies) and a display name
// (the MLS basic credential).
type Identity struct {
	Name string
	Key  ed25519.PrivateKey
	// Addresses are our mailboxes. They go into the MLS credential of every
	// leaf we create (see encodeCredential), so every member of a room
	// knows every other member's mailboxes from the ratchet tree.
	Addresses []Address
}

// NewIdentity makes a fresh identity.
func NewIdentity(name string) (*Identity, error) {
	if name == "" || len(name) > 64 {
		return nil, fmt.Errorf("e2e: identity name must be 1..64 bytes")
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("e2e: identity key: %w", err)
	}
	return &Identity{Name: name, Key: k}, nil
}

// Public is the identity's public key.
func (id *Identity) Public() ed25519.PublicKey { return id.Key.Public().(ed25519.PublicKey) }

// Member is a leaf of a group.
type Member struct {
	Leaf      uint32
	Name      string
	Key       ed25519.PublicKey
	Addresses []Address
}

// Header is the cleartext part of an MLS message: enough to route it to a
// group and order it, before any cryptography.
type Header struct {
	Kind    Kind
	GroupID []byte // nil for a Welcome
	Epoch   uint64
}

// Processed is the outcome of Group.Process.
type Processed struct {
	Kind      Kind
	Sender    Member
	Plaintext []byte // KindApplication only
	Epoch     uint64 // the group's epoch after processing
	Removed   bool   // a commit removed us
}

// KeyPackage is one MLS key package: Public goes to others (contact cards),
// Private stays in our store until a Welcome consumes it.
type KeyPackage struct {
	Public  []byte
	Private []byte
}

// Backend is the small surface of an RFC 9420 implementation that Strata
// uses, so the library can be replaced. mlsgo.go implements it over
// github.com/thomas-vilte/mls-go.
type Backend interface {
	// NewKeyPackage makes a key package for id.
	NewKeyPackage(id *Identity) (KeyPackage, error)
	// KeyPackageRef is the RFC 9420 KeyPackageRef of a public key package.
	KeyPackageRef(pub []byte) ([]byte, error)
	// CheckKeyPackage verifies a public key package and returns its owner.
	CheckKeyPackage(pub []byte) (Member, error)
	// NewGroup creates a one-member group.
	NewGroup(id *Identity, groupID []byte) (Group, error)
	// WelcomeRefs lists the KeyPackageRefs a Welcome is addressed to.
	WelcomeRefs(welcome []byte) ([][]byte, error)
	// Join joins the group a Welcome describes with one of our key packages.
	Join(id *Identity, welcome []byte, kp KeyPackage) (Group, error)
	// Load restores a group from Group.Marshal.
	Load(id *Identity, state []byte) (Group, error)
	// Header parses the cleartext header of an MLS message.
	Header(msg []byte) (Header, error)
}

// Group is one member's view of an MLS group. Methods are not safe for
// concurrent use; Room serializes them. Process and Commit leave the group
// unchanged when they fail.
type Group interface {
	ID() []byte
	Epoch() uint64
	EpochAuthenticator() []byte
	Self() uint32
	Members() []Member
	// Commit adds the key packages and removes the leaves (plus any stored
	// proposals, e.g. a member's leave) in one commit, merges it locally
	// and returns the commit message and, if anyone was added, the Welcome.
	Commit(adds [][]byte, removes []uint32) (commit, welcome []byte, err error)
	// ProposeLeave returns a proposal removing ourselves, for another member
	// to commit.
	ProposeLeave() ([]byte, error)
	// PendingProposals is how many received proposals wait for a commit.
	PendingProposals() int
	// Encrypt makes an application message.
	Encrypt(plaintext []byte) ([]byte, error)
	// Process handles an application, proposal or commit message.
	Process(msg []byte) (Processed, error)
	// Export is MLS-Exporter (RFC 9420 §8.5) for the current epoch.
	Export(label string, context []byte, length int) ([]byte, error)
	// Marshal serializes the whole state (secrets included: encrypt it).
	Marshal() ([]byte, error)
	// Clone is a deep copy.
	Clone() (Group, error)
}
