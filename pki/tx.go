package pki

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/strata-mix/strata/sphinx"
)

// TxVersion is the version byte every transaction starts with.
const TxVersion = 1

// MaxTxSize bounds an encoded transaction; CheckTx refuses larger ones
// before decoding.
const MaxTxSize = 4096

// Limits of the fields of a transaction.
const (
	maxAddrs     = 8
	maxAddrLen   = 256
	maxKeysPerTx = 16
	txHeaderSize = 1 + 1 + 8 + ed25519.PublicKeySize
	txSigSize    = ed25519.SignatureSize
)

// TxType names what a transaction does.
type TxType uint8

// The transaction types.
const (
	TxIntention TxType = 1 // a node asks to join
	TxAttest    TxType = 2 // a validator saw the node answer its probe
	TxMixKeys   TxType = 3 // a node publishes mix keys for coming epochs
	TxVRF       TxType = 4 // a relay's VRF output on the current beacon
	TxLeave     TxType = 5 // a node leaves
)

func (t TxType) String() string {
	switch t {
	case TxIntention:
		return "intention"
	case TxAttest:
		return "attest"
	case TxMixKeys:
		return "mix-keys"
	case TxVRF:
		return "vrf"
	case TxLeave:
		return "leave"
	}
	return fmt.Sprintf("TxType(%d)", uint8(t))
}

// Role is what a registered node does in the network.
type Role uint8

// The roles.
const (
	RoleRelay   Role = 1
	RoleMailbox Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleRelay:
		return "relay"
	case RoleMailbox:
		return "mailbox"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Body is the type-specific part of a transaction: *Intention,
// *Attestation, *MixKeys, *VRFSubmission or *Leave.
type Body interface {
	Type() TxType
	encode(e *enc)
}

// Intention registers a node. The transaction's signature by the identity
// key is the proof of key possession; Nonce makes the proof of work.
type Intention struct {
	Role  Role
	Nonce uint64
	// Addrs are the node's libp2p multiaddrs in text form, without a /p2p
	// component: the peer id follows from the identity key.
	Addrs []string
}

// Attestation says that the signing validator reached Subject over libp2p
// in the transaction's epoch and Subject signed its challenge.
type Attestation struct {
	Subject sphinx.NodeID
}

// MixKeys publishes the node's X25519 mix keys for epochs First,
// First+1, ….
type MixKeys struct {
	First uint64
	Keys  []sphinx.PublicKey
}

// VRFSubmission is a relay's ECVRF proof on Beacon, the beacon of the
// transaction's epoch; the output is derived from the proof.
type VRFSubmission struct {
	Beacon [32]byte
	Proof  [VRFProofSize]byte
}

// Leave removes the signing node from the registry.
type Leave struct{}

// Type returns TxIntention.
func (*Intention) Type() TxType { return TxIntention }

// Type returns TxAttest.
func (*Attestation) Type() TxType { return TxAttest }

// Type returns TxMixKeys.
func (*MixKeys) Type() TxType { return TxMixKeys }

// Type returns TxVRF.
func (*VRFSubmission) Type() TxType { return TxVRF }

// Type returns TxLeave.
func (*Leave) Type() TxType { return TxLeave }

func (b *Intention) encode(e *enc) {
	e.u8(uint8(b.Role))
	e.u64(b.Nonce)
	e.u8(uint8(len(b.Addrs)))
	for _, a := range b.Addrs {
		e.string16(a)
	}
}

func (b *Attestation) encode(e *enc) { e.raw(b.Subject[:]) }

func (b *MixKeys) encode(e *enc) {
	e.u64(b.First)
	e.u8(uint8(len(b.Keys)))
	for _, k := range b.Keys {
		e.raw(k[:])
	}
}

func (b *VRFSubmission) encode(e *enc) {
	e.raw(b.Beacon[:])
	e.raw(b.Proof[:])
}

func (*Leave) encode(*enc) {}

// Tx is a decoded transaction. Signer is an identity key for every type but
// TxAttest, whose signer is a validator's consensus key.
type Tx struct {
	Epoch  uint64
	Signer [ed25519.PublicKeySize]byte
	Body   Body
	Sig    [txSigSize]byte
	// unsigned is the encoding up to the signature: the header and body.
	unsigned []byte
}

// SignerID is the node id of the signer: SHA-256 of its public key.
func (tx *Tx) SignerID() sphinx.NodeID { return sha256.Sum256(tx.Signer[:]) }

// BodyHash identifies what the transaction does, independently of its
// signature; the chain refuses a second transaction with the same hash.
func (tx *Tx) BodyHash() [32]byte { return sha256.Sum256(tx.unsigned) }

// encodeUnsigned returns the header and body of a transaction.
func encodeUnsigned(epoch uint64, signer []byte, body Body) []byte {
	e := enc{b: make([]byte, 0, 256)}
	e.u8(TxVersion)
	e.u8(uint8(body.Type()))
	e.u64(epoch)
	e.raw(signer)
	body.encode(&e)
	return e.b
}

const sigDomain = "strata-pki-tx-v1\x00"

// signMessage is what the signature covers: a domain separator, the chain
// id and the unsigned transaction, so a transaction is valid on one chain
// only.
func signMessage(chainID string, unsigned []byte) []byte {
	m := make([]byte, 0, len(sigDomain)+1+len(chainID)+len(unsigned))
	m = append(m, sigDomain...)
	m = append(m, uint8(len(chainID)))
	m = append(m, chainID...)
	return append(m, unsigned...)
}

// SignTx encodes and signs a transaction of body for epoch on chain
// chainID. An Intention must already carry its proof of work (see
// NewIntention).
func SignTx(chainID string, epoch uint64, key ed25519.PrivateKey, body Body) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("pki: sign: private key of %d bytes", len(key))
	}
	if len(chainID) > 255 {
		return nil, fmt.Errorf("pki: sign: chain id of %d bytes", len(chainID))
	}
	if err := checkBody(body); err != nil {
		return nil, err
	}
	unsigned := encodeUnsigned(epoch, key.Public().(ed25519.PublicKey), body)
	if len(unsigned)+txSigSize > MaxTxSize {
		return nil, fmt.Errorf("pki: sign: %w: transaction of %d bytes", ErrMalformed, len(unsigned)+txSigSize)
	}
	return append(unsigned, ed25519.Sign(key, signMessage(chainID, unsigned))...), nil
}

// checkBody enforces the limits the decoder enforces, so that SignTx never
// produces a transaction DecodeTx refuses.
func checkBody(body Body) error {
	switch b := body.(type) {
	case *Intention:
		if len(b.Addrs) < 1 || len(b.Addrs) > maxAddrs {
			return fmt.Errorf("pki: %w: %d addresses (1 to %d)", ErrMalformed, len(b.Addrs), maxAddrs)
		}
		for _, a := range b.Addrs {
			if len(a) < 1 || len(a) > maxAddrLen {
				return fmt.Errorf("pki: %w: address of %d bytes (1 to %d)", ErrMalformed, len(a), maxAddrLen)
			}
		}
	case *MixKeys:
		if len(b.Keys) < 1 || len(b.Keys) > maxKeysPerTx {
			return fmt.Errorf("pki: %w: %d mix keys (1 to %d)", ErrMalformed, len(b.Keys), maxKeysPerTx)
		}
	case *Attestation, *VRFSubmission, *Leave:
	default:
		return fmt.Errorf("pki: %w: unknown body %T", ErrMalformed, body)
	}
	return nil
}

// DecodeTx parses a transaction without checking its signature or anything
// that needs the chain's state. Any deviation from the canonical encoding is
// an error wrapping ErrMalformed.
func DecodeTx(b []byte) (*Tx, error) {
	if len(b) > MaxTxSize {
		return nil, fmt.Errorf("%w: transaction of %d bytes, at most %d", ErrMalformed, len(b), MaxTxSize)
	}
	if len(b) < txHeaderSize+txSigSize {
		return nil, fmt.Errorf("%w: transaction of %d bytes, at least %d", ErrMalformed, len(b), txHeaderSize+txSigSize)
	}
	unsigned := b[:len(b)-txSigSize]
	d := &dec{b: unsigned}
	if v := d.u8("version"); v != TxVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, v, TxVersion)
	}
	t := TxType(d.u8("type"))
	tx := &Tx{Epoch: d.u64("epoch")}
	d.fixed(tx.Signer[:], "signer")
	switch t {
	case TxIntention:
		tx.Body = decodeIntention(d)
	case TxAttest:
		a := &Attestation{}
		d.fixed(a.Subject[:], "subject")
		tx.Body = a
	case TxMixKeys:
		tx.Body = decodeMixKeys(d)
	case TxVRF:
		v := &VRFSubmission{}
		d.fixed(v.Beacon[:], "beacon")
		d.fixed(v.Proof[:], "proof")
		tx.Body = v
	case TxLeave:
		tx.Body = &Leave{}
	default:
		return nil, fmt.Errorf("%w: unknown transaction type %d", ErrMalformed, uint8(t))
	}
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("%v transaction: %w", t, err)
	}
	copy(tx.Sig[:], b[len(b)-txSigSize:])
	tx.unsigned = append([]byte(nil), unsigned...)
	return tx, nil
}

func decodeIntention(d *dec) *Intention {
	in := &Intention{Role: Role(d.u8("role")), Nonce: d.u64("nonce")}
	n := int(d.u8("address count"))
	if d.err == nil && (n < 1 || n > maxAddrs) {
		d.fail("%d addresses (1 to %d)", n, maxAddrs)
	}
	for i := 0; i < n && d.err == nil; i++ {
		a := d.bytes16(maxAddrLen, "address")
		if d.err == nil && len(a) == 0 {
			d.fail("empty address")
		}
		in.Addrs = append(in.Addrs, string(a))
	}
	return in
}

func decodeMixKeys(d *dec) *MixKeys {
	mk := &MixKeys{First: d.u64("first epoch")}
	n := int(d.u8("key count"))
	if d.err == nil && (n < 1 || n > maxKeysPerTx) {
		d.fail("%d mix keys (1 to %d)", n, maxKeysPerTx)
	}
	for i := 0; i < n && d.err == nil; i++ {
		var k sphinx.PublicKey
		d.fixed(k[:], "mix key")
		mk.Keys = append(mk.Keys, k)
	}
	return mk
}

// VerifySignature checks the transaction's signature for chain chainID.
func (tx *Tx) VerifySignature(chainID string) error {
	if !ed25519.Verify(tx.Signer[:], signMessage(chainID, tx.unsigned), tx.Sig[:]) {
		return reject(CodeBadSignature, "%v transaction not signed by %x for chain %q", tx.Body.Type(), tx.Signer[:8], chainID)
	}
	return nil
}
