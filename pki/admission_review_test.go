package pki

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// Adversarial review of admission (issue 16, P5 against A5).

// attesterSim drives the real probe schedule of one validator (the
// quorum) the way attester.run and attester.pass do — a pass every
// Interval that starts the due nodes in order while probe slots are free —
// on a virtual clock, with the defaults' figures: Interval 1 s, Parallel 8,
// ProbeTimeout 5 s, RetryAfter 5 s, ProbeBudget 3, one-hour epochs. A node
// that answers frees its slot at once and is attested; a black-holed one
// holds its slot for ProbeTimeout.
type attesterSim struct {
	s        *schedule
	parallel int
	timeout  time.Duration
	epochLen time.Duration
	t0       time.Time
	answers  map[sphinx.NodeID]bool
	running  []simProbe
	// first is when each node's first probe of each epoch started.
	first map[sphinx.NodeID]map[uint64]time.Duration
	// starts counts the probes started.
	starts int
}

type simProbe struct {
	node  *Registration
	epoch uint64
	end   time.Duration
}

func newAttesterSim() *attesterSim {
	return &attesterSim{
		s:        newSchedule(3, 5*time.Second, [32]byte{7}),
		parallel: DefaultProbeParallel, timeout: 5 * time.Second, epochLen: time.Hour,
		t0:      time.Unix(1_000_000, 0),
		answers: map[sphinx.NodeID]bool{},
		first:   map[sphinx.NodeID]map[uint64]time.Duration{},
	}
}

// tick is one pass at virtual time now over the registered nodes.
func (a *attesterSim) tick(now time.Duration, nodes []*Registration) {
	epoch := uint64(now / a.epochLen)
	kept := a.running[:0]
	for _, p := range a.running {
		if p.end <= now {
			a.s.finish(p.node, p.epoch, false)
			continue
		}
		kept = append(kept, p)
	}
	a.running = kept
	if len(a.running) >= a.parallel {
		return
	}
	for _, n := range a.s.due(a.t0.Add(now), epoch, need(nodes...)) {
		if len(a.running) >= a.parallel {
			break
		}
		if !a.s.start(n, epoch, a.t0.Add(now)) {
			continue
		}
		a.starts++
		if a.first[n.ID] == nil {
			a.first[n.ID] = map[uint64]time.Duration{}
		}
		if _, ok := a.first[n.ID][epoch]; !ok {
			a.first[n.ID][epoch] = now
		}
		if a.answers[n.ID] {
			a.s.finish(n, epoch, true)
			continue
		}
		a.running = append(a.running, simProbe{node: n, epoch: epoch, end: now + a.timeout})
	}
}

// TestAdmissionReviewDeadAdmittedSybilsDoNotStarvePendingNodes: an operator gets
// 400 Sybil identities admitted — 16 intentions an epoch at the floor
// price (2^20 hashes, 0.17 s each) for 25 epochs is 68 core-seconds in all
// — and keeps them registered by letting each answer one probe every
// DropAfter epochs; in between they are black holes (a TCP port that
// accepts and never answers). Each dead admitted node is probed ≈ 17 times
// an epoch (spacing RetryAfter … 64 × RetryAfter), so 400 of them ask
// 400 × 17 × 5 s ≈ 34,000 prober-seconds an epoch of an 8-slot attester's
// 28,800. If admitted nodes always go before pending ones, a pending node
// is probed only when no admitted node is due: an honest newcomer that
// registers mid-epoch waits far longer than docs/pki.md's bound ("a new
// pending node waits for at most the pending nodes ahead of it that have
// had no probe yet: at the defaults ≤ 512 × 5 s / 8 = 320 s"). Asserted:
// the newcomer's first probe within 320 s of its registration, and every
// honest admitted relay probed in each epoch before its freeze.
func TestAdmissionReviewDeadAdmittedSybilsDoNotStarvePendingNodes(t *testing.T) {
	const sybils, honest = 400, 10
	a := newAttesterSim()
	var nodes []*Registration
	for i := range sybils {
		nodes = append(nodes, regOf("review-sybil", i, StatusAdmitted, 0))
	}
	var relays []*Registration
	for i := range honest {
		r := regOf("review-honest", i, StatusAdmitted, 0)
		a.answers[r.ID] = true
		relays = append(relays, r)
		nodes = append(nodes, r)
	}
	newcomer := regOf("review-newcomer", 0, StatusPending, 1)
	a.answers[newcomer.ID] = true
	registerAt := a.epochLen + 15*time.Minute
	end := 2 * a.epochLen
	for now := time.Duration(0); now < end; now += time.Second {
		if now == registerAt {
			nodes = append(nodes, newcomer)
		}
		a.tick(now, nodes)
	}
	got, ok := a.first[newcomer.ID][1]
	if !ok {
		t.Fatalf("the honest newcomer registered at %v was never probed in its epoch (it ends at %v)", registerAt, end)
	}
	if wait := got - registerAt; wait > 320*time.Second {
		t.Fatalf("the honest newcomer waited %v for its first probe, docs/pki.md bounds it by 320 s", wait)
	} else {
		t.Logf("newcomer probed %v after registering, beside %d dead admitted Sybils", wait, sybils)
	}
	freeze := 45 * time.Minute
	for _, r := range relays {
		for e := uint64(0); e < 2; e++ {
			at, ok := a.first[r.ID][e]
			if !ok || at-time.Duration(e)*a.epochLen > freeze {
				t.Fatalf("honest relay %v not probed before the freeze of epoch %d (first probe %v, ok %v)", r.ID, e, at, ok)
			}
		}
	}
}

// TestAdmittedBlackHolesDoNotPushHonestRelaysPastTheFreeze (from the
// review): every admitted node is due at the start of each epoch, and a
// black-holed one holds a probe slot for ProbeTimeout, so N admitted black
// holes keep an attester's first round busy for N × ProbeTimeout /
// Parallel — with 8 slots, 5,000 of them (16 floor-price intentions an
// epoch for 313 epochs, ≈ 14 core-minutes of SHA-256 in all) outlasted the
// 45 minutes before the freeze and left honest relays unseen, so out of
// the next topology. Now admitted nodes a quorum saw in the previous
// epoch go first, and DefaultProbeParallel is 64:
//   - black holes that were also dead last epoch never delay honest
//     relays that kept answering: all 30 are probed in the first second;
//   - black holes that answered last epoch (the attacker alternates) hold
//     the first round for at most N × 5 s / 64: 5,000 of them 391 s, well
//     before the freeze.
func TestAdmittedBlackHolesDoNotPushHonestRelaysPastTheFreeze(t *testing.T) {
	const sybils, honest, epoch = 5000, 30, 5
	for _, tc := range []struct {
		name         string
		sybilSeen    uint64 // the black holes' LastSeen
		honestWithin time.Duration
	}{
		{"dead last epoch too", epoch - 3, time.Second},
		{"answered last epoch", epoch - 1, sybils * 5 * time.Second / DefaultProbeParallel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAttesterSim()
			var nodes []*Registration
			for i := range sybils {
				n := regOf("review-sybil", i, StatusAdmitted, 0)
				n.LastSeen = tc.sybilSeen
				nodes = append(nodes, n)
			}
			var relays []*Registration
			for i := range honest {
				r := regOf("review-honest", i, StatusAdmitted, 0)
				r.LastSeen = epoch - 1
				a.answers[r.ID] = true
				relays = append(relays, r)
				nodes = append(nodes, r)
			}
			begin := epoch * a.epochLen
			freeze := begin + 45*time.Minute
			for now := begin; now <= freeze; now += time.Second {
				a.tick(now, nodes)
			}
			var last time.Duration
			for _, r := range relays {
				at, ok := a.first[r.ID][epoch]
				if !ok {
					t.Fatalf("honest relay %v not probed before the freeze beside %d admitted black holes", r.ID, sybils)
				}
				last = max(last, at-begin)
			}
			if last > tc.honestWithin {
				t.Fatalf("last honest relay first probed %v into the epoch, want within %v", last, tc.honestWithin)
			}
			t.Logf("%d admitted black holes (last seen in epoch %d): every honest relay probed within %v of the epoch's start", sybils, tc.sybilSeen, last)
		})
	}
}

// lyingAdmission is an attacker's chain endpoint (A8) in front of a real
// validator: it passes everything through but answers /admission with
// the price it chooses.
type lyingAdmission struct {
	Chain
	bits uint32
}

func (l lyingAdmission) Query(ctx context.Context, path string) ([]byte, int64, error) {
	raw, h, err := l.Chain.Query(ctx, path)
	if err != nil || path != QueryAdmission {
		return raw, h, err
	}
	a, err := DecodeAdmission(raw)
	if err != nil {
		return nil, 0, err
	}
	a.PowBits = l.bits
	out, err := json.Marshal(a)
	return out, h, err
}

// TestAdmissionReviewLyingPriceIsRefusedNotPaid: /admission is not
// provable, and docs/pki.md said a lying endpoint could make an agent
// "waste work (at most 2^40 hashes)" — 2^40 SHA-256 evaluations are
// about two core-days at the documented 6.25 M hashes/s, for a price no
// chain with these parameters can ask: the most any state of the chain
// asks is PowBitsFor(MaxPendingPerEpoch − 1) (13 bits here, 35 at the
// defaults), since the cap refuses every intention once MaxPendingPerEpoch
// are in. The agent, told 40 bits, must refuse the answer at once, send
// nothing and burn nothing; told the truth, it registers.
func TestAdmissionReviewLyingPriceIsRefusedNotPaid(t *testing.T) {
	p := attackParams() // 6 bits, +1 every 2, 16 an epoch: at most 13 bits
	n := startValidatorWith(t, p, attackAttester(nil))
	waitFor(t, 20*time.Second, "the first epoch", func() bool {
		raw, _, err := n.Query(context.Background(), QueryEpoch)
		if err != nil {
			return false
		}
		ei, err := DecodeEpochInfo(raw)
		return err == nil && ei.Open
	})
	key := detKey("review-lying-admission", 0)
	liar := lyingAdmission{Chain: n, bits: MaxPowBits}
	a, err := NewAgent(AgentConfig{Chain: liar, Identity: key, Role: RoleRelay, Addrs: []string{"/ip4/127.0.0.1/tcp/9"}, MixKey: testMixKey(key), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = a.Step(ctx)
	took := time.Since(start)
	if err == nil || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("told %d bits the agent ground for %v (err %v), want a refusal of the answer at once", MaxPowBits, took, err)
	}
	if took > 5*time.Second {
		t.Fatalf("refusing the lying price took %v", took)
	}
	t.Logf("lying price refused after %v: %v", took, err)
	if _, ok := nodeView(t, n, idOf(key)); ok {
		t.Fatal("the agent registered through the lying endpoint")
	}
	// The same key's agent behind the honest endpoint registers, and its
	// steps while the intention waits in the mempool are not errors (each
	// used to end in CometBFT's "tx already exists in cache", drop the
	// intention and compute the same proof of work again on the next step).
	honest, err := NewAgent(AgentConfig{Chain: n, Identity: key, Role: RoleRelay, Addrs: []string{"/ip4/127.0.0.1/tcp/9"}, MixKey: testMixKey(key), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the honest registration", func() bool {
		if _, err := honest.Step(ctx); err != nil {
			t.Fatalf("honest step: %v", err)
		}
		_, ok := nodeView(t, n, idOf(key))
		return ok
	})
}

// TestAdmissionReviewLastEpochsWorkPaysThisEpochsPrice: an intention
// signed for epoch e−1 is still accepted in e, so an attacker may stock
// work during e−1 and spend it when e opens. It counts against e's cap
// and must carry e's price at the moment it is applied: work stocked at
// e−1's floor price buys one place, not a cap's worth, and stocked
// intentions cannot overfill e. (Held: this passes.)
func TestAdmissionReviewLastEpochsWorkPaysThisEpochsPrice(t *testing.T) {
	p := testParams()
	p.PowBits, p.PowStep, p.MaxPendingPerEpoch = 4, 1, 4
	c := newChain(t, p, 1)
	c.mustBlock()
	addrs := []string{"/ip4/127.0.0.1/tcp/4001"}
	// Epoch 0: fill it, and stock intentions signed for it at the floor
	// price and at the prices an epoch climbs through.
	for i := range 4 {
		c.mustBlock(exactIntention(t, testChainID, 0, detKey("review-stock-fill", i), addrs, p.PowBitsFor(uint32(i))))
	}
	var floor, climbing [][]byte
	for i := range 6 {
		floor = append(floor, exactIntention(t, testChainID, 0, detKey("review-stock-floor", i), addrs, p.PowBits))
		climbing = append(climbing, exactIntention(t, testChainID, 0, detKey("review-stock-climb", i), addrs, p.PowBitsFor(uint32(min(i, 3)))))
	}
	if err := c.block(floor[0])[0]; CodeOf(err) != CodePendingFull {
		t.Fatalf("a fifth intention in epoch 0: %v, want pending full", err)
	}
	c.until(int64(p.EpochBlocks) + 1)
	if c.epoch().Epoch != 1 {
		t.Fatal("epoch 1 did not open")
	}
	// Epoch 1: the floor-priced stock buys one place.
	errs := c.block(floor...)
	if errs[0] != nil {
		t.Fatalf("first stocked intention: %v", errs[0])
	}
	for i, err := range errs[1:] {
		if CodeOf(err) != CodeInsufficientWork {
			t.Fatalf("stocked floor-price intention %d in epoch 1: %v, want insufficient work", i+1, err)
		}
	}
	// Stock at the climbing prices fills what is left, and no more.
	errs = c.block(climbing[1:]...)
	accepted := 1
	for _, err := range errs {
		if err == nil {
			accepted++
		}
	}
	if n := c.m.st.accepted(1); n != 4 || accepted != 4 {
		t.Fatalf("epoch 1 accepted %d (counter %d), want the cap 4", accepted, n)
	}
	if err := errs[len(errs)-1]; CodeOf(err) != CodePendingFull {
		t.Fatalf("the intention past the cap: %v, want pending full", err)
	}
}

// TestAdmissionReviewDeadAdmittedNodeProbesPerEpoch pins the figure the
// docs give for an admitted node that stays dead: with nothing else to
// probe, 17 probes in a one-hour epoch at the defaults (at 0, 5, 15, 35,
// 75, 155, 315, 635 s, then every 320 s), 85 prober-seconds.
func TestAdmissionReviewDeadAdmittedNodeProbesPerEpoch(t *testing.T) {
	a := newAttesterSim()
	dead := regOf("review-dead", 0, StatusAdmitted, 0)
	for now := time.Duration(0); now < a.epochLen; now += time.Second {
		a.tick(now, []*Registration{dead})
	}
	if probes := a.starts; probes != 17 {
		t.Fatalf("a dead admitted node was probed %d times in an epoch, docs/pki.md says 17", probes)
	}
}
