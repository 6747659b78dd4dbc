package pki

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// MaxPowBits caps the adaptive proof of work (Params.PowBitsFor): however
// many intentions an epoch has accepted, an intention never needs more
// than 40 bits (about 2^40 SHA-256 evaluations).
const MaxPowBits = 40

// PowBitsFor is the proof of work, in leading zero bits, that the chain
// requires of an intention once accepted intentions have been accepted in
// the current epoch: PowBits + ⌊accepted / PowStep⌋, at most MaxPowBits;
// PowBits alone when PowStep is 0 (docs/pki.md, "Anti-spam").
func (p Params) PowBitsFor(accepted uint32) uint32 {
	b := uint64(p.PowBits)
	if p.PowStep > 0 {
		b += uint64(accepted / p.PowStep)
	}
	return uint32(min(b, MaxPowBits))
}

// keyAdmission holds the admission counter: epoch (8) ‖ intentions
// accepted in it (4). One record, for the latest epoch with an intention,
// so a count of an older epoch reads as 0 and nothing needs pruning.
const keyAdmission = "meta/admission"

// accepted returns how many intentions the chain accepted in epoch.
func (s state) accepted(epoch uint64) uint32 {
	v, ok := s.kv.get(keyAdmission)
	if !ok || len(v) != 12 || binary.BigEndian.Uint64(v) != epoch {
		return 0
	}
	return binary.BigEndian.Uint32(v[8:])
}

func (s state) setAccepted(epoch uint64, n uint32) {
	s.kv.set(keyAdmission, binary.BigEndian.AppendUint32(be64(epoch), n))
}

// admit applies the admission rules of an intention in epoch: the epoch
// must have room (CodePendingFull) and the work must reach the current
// price (CodeInsufficientWork). It counts nothing; countIntention does,
// once the intention is accepted.
func (m *Machine) admit(tx *Tx, epoch uint64) error {
	n := m.st.accepted(epoch)
	if n >= m.params.MaxPendingPerEpoch {
		return reject(CodePendingFull, "epoch %d has accepted its %d intentions; try again in epoch %d", epoch, m.params.MaxPendingPerEpoch, epoch+1)
	}
	if bits := m.params.PowBitsFor(n); !powOK(m.chainID, tx.unsigned, bits) {
		return reject(CodeInsufficientWork, "proof of work under %d bits (%d intentions accepted in epoch %d)", bits, n, epoch)
	}
	return nil
}

func (m *Machine) countIntention(epoch uint64) {
	m.st.setAccepted(epoch, m.st.accepted(epoch)+1)
}

// Admission is the answer of QueryAdmission: the price of an intention
// now.
type Admission struct {
	// Epoch is the current epoch.
	Epoch uint64 `json:"epoch"`
	// Accepted is how many intentions the chain accepted in it, and
	// MaxPending how many it accepts at most (Params.MaxPendingPerEpoch).
	Accepted   uint32 `json:"accepted"`
	MaxPending uint32 `json:"max_pending"`
	// PowBits is what the next intention needs: Params.PowBitsFor(Accepted).
	PowBits uint32 `json:"pow_bits"`
}

// Full reports whether the epoch accepts no more intentions.
func (a Admission) Full() bool { return a.Accepted >= a.MaxPending }

func admissionOf(st state) (Admission, error) {
	p, err := st.params()
	if err != nil {
		return Admission{}, err
	}
	ei, err := st.epoch()
	if err != nil {
		return Admission{}, err
	}
	n := st.accepted(ei.Epoch)
	return Admission{Epoch: ei.Epoch, Accepted: n, MaxPending: p.MaxPendingPerEpoch, PowBits: p.PowBitsFor(n)}, nil
}

// DecodeAdmission parses the answer of QueryAdmission.
func DecodeAdmission(b []byte) (Admission, error) {
	var a Admission
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("pki: admission: %w", err)
	}
	if a.PowBits > MaxPowBits {
		return a, fmt.Errorf("pki: admission: %d bits of work (at most %d)", a.PowBits, MaxPowBits)
	}
	return a, nil
}
