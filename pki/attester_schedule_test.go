package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

func regOf(tag string, i int, status Status, registered uint64) *Registration {
	k := detKey(tag, i)
	return &Registration{ID: idOf(k), Key: pubOf(k), Role: RoleRelay, Status: status, Registered: registered}
}

func need(nodes ...*Registration) []attestItem {
	out := make([]attestItem, len(nodes))
	for i, n := range nodes {
		out[i] = attestItem{node: n, need: true}
	}
	return out
}

// TestProbeBudget: a pending node that never answers is probed at most
// ProbeBudget times in total, across epochs, never twice within
// RetryAfter nor twice at once; an admitted one in every epoch until it
// is seen, its probes spaced RetryAfter, 2·RetryAfter, 4·RetryAfter …
// from the epoch's start; a node this validator attested is not probed again in the
// epoch; a node that registers again gets a new budget; the records of
// nodes gone from the chain are forgotten.
func TestProbeBudget(t *testing.T) {
	const budget, retry = 3, time.Second
	s := newSchedule(budget, retry, [32]byte{1})
	t0 := time.Unix(1_000_000, 0)
	pending := regOf("budget-pending", 0, StatusPending, 5)
	admitted := regOf("budget-admitted", 0, StatusAdmitted, 1)
	probes := map[sphinx.NodeID]int{}
	var admittedAt []time.Duration
	run := func(at time.Duration, epoch uint64, items []attestItem) []*Registration {
		due := s.due(t0.Add(at), epoch, items)
		for _, n := range due {
			if !s.start(n, epoch, t0.Add(at)) {
				t.Fatalf("due node %v not startable", n.ID)
			}
			if s.start(n, epoch, t0.Add(at)) {
				t.Fatalf("node %v started twice at once", n.ID)
			}
			probes[n.ID]++
			if n == admitted {
				admittedAt = append(admittedAt, at)
			}
			s.finish(n, epoch, false)
		}
		return due
	}
	items := need(pending, admitted)
	for i := range 40 { // 10 s in steps of 250 ms, epoch 5 then 6
		epoch := uint64(5 + i/20)
		due := run(time.Duration(i)*250*time.Millisecond, epoch, items)
		if len(due) == 2 && due[0] != admitted {
			t.Fatalf("step %d: pending node before the admitted one", i)
		}
		if len(due) > 0 && i%4 != 0 {
			t.Fatalf("step %d: probed %d nodes within RetryAfter of the last probe", i, len(due))
		}
	}
	if probes[pending.ID] != budget {
		t.Fatalf("pending node probed %d times over two epochs, want the budget %d", probes[pending.ID], budget)
	}
	// Epoch 5 from 0 s, epoch 6 from 5 s: probes 1, 2, 4 s apart, the
	// spacing starting again with the epoch.
	want := []time.Duration{0, time.Second, 3 * time.Second, 5 * time.Second, 6 * time.Second, 8 * time.Second}
	if !slices.Equal(admittedAt, want) {
		t.Fatalf("admitted node probed at %v, want %v", admittedAt, want)
	}
	// An attestation ends the epoch's probes of a node.
	fresh := regOf("budget-fresh", 0, StatusAdmitted, 1)
	now := 20 * time.Second
	due := s.due(t0.Add(now), 7, need(fresh))
	if len(due) != 1 || !s.start(fresh, 7, t0.Add(now)) {
		t.Fatal("fresh admitted node not due")
	}
	s.finish(fresh, 7, true)
	if due := s.due(t0.Add(now+time.Hour), 7, need(fresh)); len(due) != 0 {
		t.Fatal("a node attested this epoch is due again in it")
	}
	if due := s.due(t0.Add(now+time.Hour), 8, need(fresh)); len(due) != 1 {
		t.Fatal("a node attested last epoch is not due in the next")
	}
	// The same node registered again (a new intention) has a new budget;
	// a node gone from the chain is forgotten.
	again := *pending
	again.Registered = 9
	if due := s.due(t0.Add(time.Hour), 9, need(&again)); len(due) != 1 {
		t.Fatal("a node registered again has no budget")
	}
	if _, ok := s.recs[admitted.ID]; ok {
		t.Fatal("the record of a node no longer registered is kept")
	}
	// A node that does not need this validator's probe (attested, or seen
	// by a quorum) is never due.
	if due := s.due(t0.Add(2*time.Hour), 10, []attestItem{{node: regOf("budget-seen", 0, StatusAdmitted, 1)}}); len(due) != 0 {
		t.Fatal("a node nobody needs probed is due")
	}
}

// groundID is a node id an attacker ground to sort before every other.
func groundID() sphinx.NodeID { return sphinx.NodeID{} }

// TestKeyedOrderIgnoresGroundIDs: the probe order within a class is a
// keyed shuffle per epoch, so an id ground to sort first (all zeros, the
// least possible) is probed first no more often than chance, 1 in n,
// over many attester secrets and epochs; the order is fixed for a secret
// and epoch and changes with the epoch; pending nodes probed fewer times
// go first.
func TestKeyedOrderIgnoresGroundIDs(t *testing.T) {
	const n, trials = 16, 4000
	var nodes []*Registration
	for i := range n - 1 {
		nodes = append(nodes, regOf("order", i, StatusPending, 0))
	}
	ground := &Registration{ID: groundID(), Status: StatusPending}
	nodes = append(nodes, ground)
	first := 0
	for trial := range trials {
		var secret [32]byte
		if _, err := rand.Read(secret[:]); err != nil {
			t.Fatal(err)
		}
		s := newSchedule(3, time.Second, secret)
		due := s.due(time.Now(), uint64(trial), need(nodes...))
		if len(due) != n {
			t.Fatalf("%d due of %d", len(due), n)
		}
		if due[0] == ground {
			first++
		}
	}
	// Chance is trials/n = 250, standard deviation about 15.3; an order by
	// id would put it first every time.
	if lo, hi := trials/n-80, trials/n+80; first < lo || first > hi {
		t.Fatalf("the ground id was first %d times in %d, chance is %d", first, trials, trials/n)
	}
	t.Logf("ground id first in %d of %d passes (chance %d)", first, trials, trials/n)

	s := newSchedule(3, time.Second, sha256.Sum256([]byte("secret")))
	order := func(epoch uint64) []sphinx.NodeID {
		var ids []sphinx.NodeID
		for _, r := range s.due(time.Unix(0, 0), epoch, need(nodes...)) {
			ids = append(ids, r.ID)
		}
		return ids
	}
	a, b, c := order(1), order(1), order(2)
	same := func(x, y []sphinx.NodeID) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatal("the order of one secret and epoch changed")
	}
	if same(a, c) {
		t.Fatal("the order did not change with the epoch")
	}
	// Probe the first node once: it goes last among the pending ones.
	n0 := nodes[0]
	for _, r := range nodes {
		if r.ID == a[0] {
			n0 = r
		}
	}
	s.start(n0, 1, time.Unix(0, 0))
	s.finish(n0, 1, false)
	after := s.due(time.Unix(10, 0), 1, need(nodes...))
	if after[len(after)-1] != n0 {
		t.Fatal("a pending node probed once is not behind those never probed")
	}
}
