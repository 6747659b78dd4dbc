package pki

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// attestItem is a registered node as the attester sees it: need says that
// this validator has not attested it in the current epoch and, for an
// admitted node, that no quorum has seen it in the epoch yet.
type attestItem struct {
	node *Registration
	need bool
}

// schedule decides which nodes a validator probes and in which order
// (docs/pki.md, "Validation"):
//   - a pending node at most budget times in total (per registration),
//     at most once per retry period; an admitted node until this validator
//     attests it or a quorum sees it in the epoch, its probes in an epoch
//     spaced retry, 2·retry, 4·retry … (at most maxBackoff·retry), so a
//     relay back from a restart at any time before the freeze is seen
//     again while one that stays dead costs a few dozen probes an epoch;
//     never twice at once;
//   - nodes probed fewer times (in total if pending, in the epoch if
//     admitted) first; among nodes probed as often, admitted nodes a
//     quorum saw in the previous epoch, then other admitted nodes, then
//     pending ones, so every admitted node has its first probe of an epoch
//     before any pending node, relays that keep answering before admitted
//     nodes that stopped, and every pending node its first probe
//     before a dead admitted node its second (admitted identities are
//     cheap, and each is due ≈ 17 times an epoch while it stays dead:
//     were all admitted nodes first, a few hundred black holes would
//     keep pending nodes waiting all epoch); ties in the order of
//     HMAC-SHA256(secret, orderDomain ‖ epoch ‖ node id) under a secret
//     drawn at random when the attester starts, so an id ground to sort
//     low is probed first no more often than any other.
//
// It is not safe for concurrent use; the attester locks it.
type schedule struct {
	budget int
	retry  time.Duration
	secret [32]byte
	recs   map[sphinx.NodeID]*probeRecord
}

const orderDomain = "strata-attester-order-v1\x00"

// maxBackoff bounds the spacing of an admitted node's probes in an epoch
// to 64 retry periods (5 min 20 s at the defaults).
const maxBackoff = 64

// probeRecord is what the schedule knows of one registration.
type probeRecord struct {
	registered uint64    // Registration.Registered of the registration counted
	pending    int       // probes while pending, in total
	epoch      uint64    // the epoch admitted counts for
	admitted   int       // probes while admitted, in epoch
	next       time.Time // earliest next probe
	busy       bool      // a probe is running
	done       uint64    // 1 + the epoch of this validator's last attestation
}

func newSchedule(budget int, retry time.Duration, secret [32]byte) *schedule {
	return &schedule{budget: budget, retry: retry, secret: secret, recs: make(map[sphinx.NodeID]*probeRecord)}
}

// rank is a node's place in the keyed order of an epoch.
func (s *schedule) rank(epoch uint64, id sphinx.NodeID) []byte {
	m := hmac.New(sha256.New, s.secret[:])
	m.Write([]byte(orderDomain))
	m.Write(binary.BigEndian.AppendUint64(nil, epoch))
	m.Write(id[:])
	return m.Sum(nil)
}

// order sorts nodes by the probes they had, then admitted before
// pending, then by their rank in epoch.
func (s *schedule) order(epoch uint64, nodes []*Registration) {
	ranks := make(map[sphinx.NodeID][]byte, len(nodes))
	for _, n := range nodes {
		ranks[n.ID] = s.rank(epoch, n.ID)
	}
	// Admitted nodes a quorum saw in the previous epoch (honest relays
	// that keep running) first, then other admitted nodes, then pending
	// ones: an admitted black hole holds a probe slot for the whole
	// ProbeTimeout, and one seen last epoch must have answered then.
	class := func(n *Registration) int {
		switch {
		case n.Status == StatusAdmitted && n.LastSeen+1 >= epoch:
			return 0
		case n.Status == StatusAdmitted:
			return 1
		}
		return 2
	}
	slices.SortFunc(nodes, func(a, b *Registration) int {
		if c := cmp.Compare(s.probes(a, epoch), s.probes(b, epoch)); c != 0 {
			return c
		}
		if c := cmp.Compare(class(a), class(b)); c != 0 {
			return c
		}
		return bytes.Compare(ranks[a.ID], ranks[b.ID])
	})
}

// probes is how many probes n had that count against its budget now.
func (s *schedule) probes(n *Registration, epoch uint64) int {
	r := s.record(n)
	switch {
	case n.Status != StatusAdmitted:
		return r.pending
	case r.epoch == epoch:
		return r.admitted
	}
	return 0
}

func (s *schedule) record(n *Registration) *probeRecord {
	r := s.recs[n.ID]
	if r == nil || r.registered != n.Registered {
		// A node that left and registered again paid for a new
		// intention and gets a new budget.
		r = &probeRecord{registered: n.Registered}
		s.recs[n.ID] = r
	}
	return r
}

// eligible reports whether r may be probed now for epoch.
func (s *schedule) eligible(r *probeRecord, n *Registration, epoch uint64, now time.Time) bool {
	if r.busy || r.done == epoch+1 {
		return false
	}
	if n.Status == StatusAdmitted {
		// A new epoch needs a new sighting at once.
		return r.epoch != epoch || !now.Before(r.next)
	}
	return !now.Before(r.next) && r.pending < s.budget
}

// due returns the nodes to probe now, in the order to start them, and
// forgets the records of nodes no longer registered.
func (s *schedule) due(now time.Time, epoch uint64, items []attestItem) []*Registration {
	registered := make(map[sphinx.NodeID]bool, len(items))
	var due []*Registration
	for _, it := range items {
		registered[it.node.ID] = true
		if !it.need {
			continue
		}
		if !s.eligible(s.record(it.node), it.node, epoch, now) {
			continue
		}
		due = append(due, it.node)
	}
	for id, r := range s.recs {
		if !registered[id] && !r.busy {
			delete(s.recs, id)
		}
	}
	s.order(epoch, due)
	return due
}

// start counts a probe of n that begins now, unless n is no longer
// eligible.
func (s *schedule) start(n *Registration, epoch uint64, now time.Time) bool {
	r := s.record(n)
	if !s.eligible(r, n, epoch, now) {
		return false
	}
	r.busy = true
	if n.Status == StatusAdmitted {
		if r.epoch != epoch {
			r.epoch, r.admitted = epoch, 0
		}
		r.next = now.Add(s.retry * time.Duration(min(1<<min(r.admitted, 6), maxBackoff)))
		r.admitted++
	} else {
		r.next = now.Add(s.retry)
		r.pending++
	}
	return true
}

// finish records the end of n's probe; attested says this validator's
// attestation for epoch is on its way.
func (s *schedule) finish(n *Registration, epoch uint64, attested bool) {
	r := s.recs[n.ID]
	if r == nil {
		return
	}
	r.busy = false
	if attested {
		r.done = epoch + 1
	}
}
