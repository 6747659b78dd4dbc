package pki

import (
	"bytes"
	"fmt"
	"slices"

	ma "github.com/multiformats/go-multiaddr"
)

// Validator is a member of the chain's validator set as the application
// sees it: an Ed25519 consensus key and its voting power.
type Validator struct {
	PubKey [32]byte
	Power  int64
}

// Machine is the PKI's deterministic state machine over one kv: the rules
// for each transaction and for each block (docs/pki.md, "State machine").
// It reads nothing but its state and what the block gives it.
type Machine struct {
	st      state
	chainID string
	params  Params
}

// initState writes the genesis state: chain id, parameters, validators.
func initState(s *kv, chainID string, p Params, vals []Validator) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if len(chainID) == 0 || len(chainID) > 255 {
		return fmt.Errorf("pki: chain id %q", chainID)
	}
	if len(vals) == 0 {
		return fmt.Errorf("pki: genesis has no validators")
	}
	e := enc{}
	p.encode(&e)
	s.set(keyParams, e.b)
	s.set(keyChainID, []byte(chainID))
	var total uint64
	for _, v := range vals {
		if v.Power <= 0 || v.Power > 1<<50 {
			return fmt.Errorf("pki: validator %x has power %d", v.PubKey[:8], v.Power)
		}
		s.set(u64key(prefixVal, v.PubKey[:]), be64(uint64(v.Power)))
		total += uint64(v.Power)
	}
	s.set(keyPower, be64(total))
	return nil
}

// newMachine returns the state machine over s, which must hold a genesis
// state.
func newMachine(s *kv) (*Machine, error) {
	st := state{kv: s}
	p, err := st.params()
	if err != nil {
		return nil, err
	}
	return &Machine{st: st, chainID: st.chainID(), params: p}, nil
}

// ApplyTx checks raw against the state and, if it is valid, applies it.
// The error is a *TxError whose Code says why raw was refused; a refused
// transaction leaves the state unchanged.
func (m *Machine) ApplyTx(raw []byte) (*Tx, error) {
	tx, err := DecodeTx(raw)
	if err != nil {
		return nil, reject(CodeMalformed, "%v", err)
	}
	if err := tx.VerifySignature(m.chainID); err != nil {
		return tx, err
	}
	ei, err := m.st.epoch()
	if err != nil {
		return tx, err
	}
	switch {
	case tx.Epoch > ei.Epoch:
		return tx, reject(CodeFutureEpoch, "signed for epoch %d, the chain is in epoch %d", tx.Epoch, ei.Epoch)
	case tx.Epoch+1 < ei.Epoch:
		return tx, reject(CodeStaleEpoch, "signed for epoch %d, the chain is in epoch %d", tx.Epoch, ei.Epoch)
	}
	h := tx.BodyHash()
	if m.st.seen(h) {
		return tx, reject(CodeReplayed, "%v transaction %x already applied", tx.Body.Type(), h[:8])
	}
	switch b := tx.Body.(type) {
	case *Intention:
		err = m.intention(tx, b, ei)
	case *Attestation:
		err = m.attest(tx, b, ei)
	case *MixKeys:
		err = m.mixKeys(tx, b, ei)
	case *VRFSubmission:
		err = m.vrf(tx, b, ei)
	case *Leave:
		err = m.leave(tx)
	}
	if err != nil {
		return tx, err
	}
	m.st.markSeen(h, tx.Epoch)
	return tx, nil
}

func (m *Machine) intention(tx *Tx, in *Intention, ei EpochInfo) error {
	if in.Role != RoleRelay && in.Role != RoleMailbox {
		return reject(CodeWrongRole, "role %d", uint8(in.Role))
	}
	if err := m.admit(tx, ei.Epoch); err != nil {
		return err
	}
	for _, a := range in.Addrs {
		if err := checkAddr(a, m.params.PublicAddrsOnly); err != nil {
			return err
		}
	}
	id := tx.SignerID()
	n, err := m.st.node(id)
	if err != nil {
		return err
	}
	if n != nil {
		return reject(CodeAlreadyRegistered, "node %v is %v", id, n.Status)
	}
	// An intention after the freeze of the next epoch's topology comes
	// when beacon(e+1) is public: it counts as registered in e+1, so the
	// freeze places the relay only by keys on beacons it could not know
	// (see freeze).
	registered := ei.Epoch
	if _, frozen := m.st.topology(ei.Epoch + 1); frozen {
		registered++
	}
	m.st.putNode(&Registration{ID: id, Key: tx.Signer, Role: in.Role, Status: StatusPending, Registered: registered, Addrs: in.Addrs})
	m.countIntention(ei.Epoch)
	m.markLive()
	return nil
}

// checkAddr accepts a multiaddr in its canonical text form with no /p2p
// component and, when public is set (Params.PublicAddrsOnly), one that
// passes CheckPublicAddr.
func checkAddr(a string, public bool) error {
	addr, err := ma.NewMultiaddr(a)
	if err != nil {
		return reject(CodeBadAddress, "%q: %v", a, err)
	}
	if addr.String() != a {
		return reject(CodeBadAddress, "%q is not canonical (%q)", a, addr.String())
	}
	if _, err := addr.ValueForProtocol(ma.P_P2P); err == nil {
		return reject(CodeBadAddress, "%q names a peer: the identity key does", a)
	}
	if public {
		if err := CheckPublicAddr(addr); err != nil {
			return reject(CodeBadAddress, "%q: %v (the chain accepts public addresses only)", a, err)
		}
	}
	return nil
}

func (m *Machine) attest(tx *Tx, at *Attestation, ei EpochInfo) error {
	if _, ok := m.st.validatorPower(tx.Signer); !ok {
		return reject(CodeNotValidator, "key %x", tx.Signer[:8])
	}
	if tx.Epoch != ei.Epoch {
		return reject(CodeStaleEpoch, "attestation for epoch %d in epoch %d", tx.Epoch, ei.Epoch)
	}
	n, err := m.st.node(at.Subject)
	if err != nil {
		return err
	}
	if n == nil {
		return reject(CodeUnknownNode, "subject %v", at.Subject)
	}
	vals := m.st.attesters(ei.Epoch, at.Subject)
	i, found := slices.BinarySearchFunc(vals, tx.Signer, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	if found {
		// The same validator, subject and epoch make the same body, so
		// the replay check has already refused this.
		return reject(CodeReplayed, "validator %x already attested %v in epoch %d", tx.Signer[:8], at.Subject, ei.Epoch)
	}
	vals = slices.Insert(vals, i, tx.Signer)
	m.st.setAttesters(ei.Epoch, at.Subject, vals)
	var power uint64
	for _, v := range vals {
		p, _ := m.st.validatorPower(v)
		power += p
	}
	if 3*power <= 2*m.st.totalPower() || (n.Status == StatusAdmitted && n.LastSeen == ei.Epoch) {
		return nil
	}
	if n.Status == StatusPending {
		n.Status = StatusAdmitted
		n.Admitted = ei.Epoch
	}
	n.LastSeen = ei.Epoch
	m.st.putNode(n)
	m.markLive()
	return nil
}

func (m *Machine) mixKeys(tx *Tx, mk *MixKeys, ei EpochInfo) error {
	id := tx.SignerID()
	n, err := m.st.node(id)
	if err != nil {
		return err
	}
	if n == nil {
		return reject(CodeUnknownNode, "signer %v", id)
	}
	// A key for the current epoch is useful only while epoch 0's
	// topology is still live; later topologies froze before their epoch.
	lo := ei.Epoch + 1
	if ei.Epoch == 0 {
		lo = 0
	}
	hi := ei.Epoch + m.params.KeysAhead
	last := mk.First + uint64(len(mk.Keys)) - 1
	if mk.First < lo || last > hi || last < mk.First {
		return reject(CodeKeyEpoch, "keys for epochs %d to %d, the window is %d to %d", mk.First, last, lo, hi)
	}
	for i, k := range mk.Keys {
		if err := k.Validate(); err != nil {
			return reject(CodeBadKey, "key for epoch %d: %v", mk.First+uint64(i), err)
		}
		if old, ok := m.st.mixKey(id, mk.First+uint64(i)); ok && old != k {
			return reject(CodeKeyConflict, "epoch %d already has another key", mk.First+uint64(i))
		}
	}
	for i, k := range mk.Keys {
		m.st.setMixKey(id, mk.First+uint64(i), k)
	}
	m.markLive()
	return nil
}

func (m *Machine) vrf(tx *Tx, v *VRFSubmission, ei EpochInfo) error {
	if !ei.Open {
		return reject(CodeNoBeacon, "no epoch has opened")
	}
	if tx.Epoch != ei.Epoch {
		return reject(CodeStaleEpoch, "VRF signed for epoch %d in epoch %d", tx.Epoch, ei.Epoch)
	}
	if v.Beacon != ei.Beacon {
		return reject(CodeWrongBeacon, "VRF on beacon %x, epoch %d's is %x", v.Beacon[:8], ei.Epoch, ei.Beacon[:8])
	}
	// The next epoch's topology and beacon are fixed at the freeze: a VRF
	// now would be stored and never used.
	if _, frozen := m.st.topology(ei.Epoch + 1); frozen {
		return reject(CodeLateVRF, "epoch %d's topology froze before this VRF", ei.Epoch+1)
	}
	id := tx.SignerID()
	n, err := m.st.node(id)
	if err != nil {
		return err
	}
	switch {
	case n == nil:
		return reject(CodeUnknownNode, "signer %v", id)
	case n.Role != RoleRelay:
		return reject(CodeWrongRole, "%v %v submitted a VRF", n.Role, id)
	case n.Status != StatusAdmitted:
		return reject(CodeNotAdmitted, "relay %v is %v", id, n.Status)
	}
	if e, _, ok := m.st.vrf(id); ok && e == ei.Epoch {
		return reject(CodeDuplicateVRF, "relay %v already submitted for epoch %d", id, ei.Epoch)
	}
	out, ok := VerifyVRF(tx.Signer, v.Beacon, v.Proof)
	if !ok {
		return reject(CodeBadVRF, "relay %v", id)
	}
	m.st.setVRF(id, ei.Epoch, out)
	m.markLive()
	return nil
}

func (m *Machine) leave(tx *Tx) error {
	id := tx.SignerID()
	n, err := m.st.node(id)
	if err != nil {
		return err
	}
	if n == nil {
		return reject(CodeUnknownNode, "signer %v", id)
	}
	m.st.removeNode(id)
	m.markLive()
	return nil
}

// markLive notes that epoch 0's live topology may have changed.
func (m *Machine) markLive() { m.st.kv.set(keyTopoLive, []byte{1}) }
