package pki

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// attackParams are the chain of the admission attack: 70-block epochs
// (about 8 s at 100 ms blocks), a cheap proof of work that climbs a bit
// every 2 intentions from 6 bits, at most 16 intentions an epoch, and a
// node unseen for one whole epoch dropped at the next opening but one.
func attackParams() Params {
	p := DefaultParams()
	p.EpochBlocks = 70
	p.TopologyLead = 10
	p.Successors = 2
	p.KeysAhead = 3
	p.PowBits = 6
	p.PowStep = 2
	p.MaxPendingPerEpoch = 16
	p.DropAfter = 1
	p.PublicAddrsOnly = false // the junk's tarpits are on 127.0.0.1
	return p
}

// attackAttester probes with 4 probers at most, 1 s each, a node at most
// 3 times (pending: in all; admitted: per epoch), 500 ms apart.
func attackAttester(stats *ProbeCounters) AttesterConfig {
	return AttesterConfig{Interval: 100 * time.Millisecond, ProbeTimeout: time.Second, RetryAfter: 500 * time.Millisecond, Parallel: 4, ProbeBudget: 3, Stats: stats}
}

const attackChainID = "strata-attack"

func startValidatorWith(t *testing.T, p Params, ac AttesterConfig) *ValidatorNode {
	t.Helper()
	home := t.TempDir()
	keys, err := InitHome(home)
	if err != nil {
		t.Fatal(err)
	}
	g := Genesis{ChainID: attackChainID, Time: time.Now(), Params: p,
		Validators: []GenesisValidator{{PubKey: keys.ValidatorKey, Power: 10, Name: "v0"}}}
	if err := WriteGenesis(home, g); err != nil {
		t.Fatal(err)
	}
	n, err := StartValidator(context.Background(), ValidatorConfig{Home: home, BlockInterval: 100 * time.Millisecond, Logger: testLogger(t), Attester: ac})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	return n
}

// tarpit accepts TCP connections on 127.0.0.1 and never says a word: a
// black hole that holds a prober for its whole ProbeTimeout.
func tarpit(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
}

// groundKeys returns n identity keys whose node ids begin with a zero
// byte, as an attacker grinds them to sort before every honest node.
func groundKeys(n int) []ed25519.PrivateKey {
	var out []ed25519.PrivateKey
	for i := 0; len(out) < n; i++ {
		k := detKey("ground", i)
		if id := idOf(k); id[0] == 0 {
			out = append(out, k)
		}
	}
	return out
}

// msgCounter counts the records whose message starts with prefix.
type msgCounter struct {
	prefix string
	n      *atomic.Int64
}

func (h msgCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h msgCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return nil
}
func (h msgCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h msgCounter) WithGroup(string) slog.Handler      { return h }

// startRelay starts a real libp2p probe host for key and an agent that
// registers it at n.
func startRelay(ctx context.Context, t *testing.T, n *ValidatorNode, key ed25519.PrivateKey, log *slog.Logger) {
	t.Helper()
	h, err := StartProbeHost(key, n.ChainID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if log == nil {
		log = testLogger(t)
	}
	a, err := NewAgent(AgentConfig{Chain: n, Identity: key, Role: RoleRelay, Addrs: HostAddrs(h), MixKey: testMixKey(key), Interval: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx)
}

func nodeView(t *testing.T, n *ValidatorNode, id sphinx.NodeID) (*NodeView, bool) {
	t.Helper()
	raw, _, err := n.Query(context.Background(), QueryNode+"/"+hex.EncodeToString(id[:]))
	if errors.Is(err, ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var v NodeView
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return &v, true
}

func admissionNow(t *testing.T, n *ValidatorNode) Admission {
	t.Helper()
	raw, _, err := n.Query(context.Background(), QueryAdmission)
	if err != nil {
		t.Fatal(err)
	}
	adm, err := DecodeAdmission(raw)
	if err != nil {
		t.Fatal(err)
	}
	return adm
}

// epochWatch polls the chain every 25 ms and records, per epoch, the
// highest admission count, whether each watched node was seen by a
// quorum in that epoch, and any poll at which a watched node was not
// admitted.
type epochWatch struct {
	mu       sync.Mutex
	accepted map[uint64]uint32
	seen     map[uint64]map[sphinx.NodeID]bool
	watched  []sphinx.NodeID
	lost     []string
	badPrice []string
}

func (w *epochWatch) watch(ids ...sphinx.NodeID) {
	w.mu.Lock()
	w.watched = append(w.watched, ids...)
	w.mu.Unlock()
}

func (w *epochWatch) run(ctx context.Context, t *testing.T, n *ValidatorNode, p Params) {
	for ctx.Err() == nil {
		adm := admissionNow(t, n)
		w.mu.Lock()
		w.accepted[adm.Epoch] = max(w.accepted[adm.Epoch], adm.Accepted)
		if adm.PowBits != p.PowBitsFor(adm.Accepted) {
			w.badPrice = append(w.badPrice, fmt.Sprintf("%+v", adm))
		}
		watched := append([]sphinx.NodeID(nil), w.watched...)
		w.mu.Unlock()
		for _, id := range watched {
			v, ok := nodeView(t, n, id)
			w.mu.Lock()
			switch {
			case !ok || v.Status != StatusAdmitted.String():
				w.lost = append(w.lost, fmt.Sprintf("epoch %d: %v is %v", adm.Epoch, id, v))
			case v.LastSeen == adm.Epoch:
				if w.seen[adm.Epoch] == nil {
					w.seen[adm.Epoch] = map[sphinx.NodeID]bool{}
				}
				w.seen[adm.Epoch][id] = true
			}
			w.mu.Unlock()
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdmissionFloodDoesNotStarveHonestNodes is issue 16's admission
// attack, against a real validator (CometBFT, 100 ms blocks, the real
// attester probing over libp2p) with the small parameters of
// attackParams and attackAttester. Three honest relays (real probe hosts,
// real agents) are admitted; at the start of the next epoch E an attacker
// sends 10,000 intentions from ids ground to sort first, naming
// tarpits (TCP that never answers), TEST-NET addresses and unroutable
// ones: it pays the climbing price for as many as the chain takes, and
// checks at each that one bit less is refused; mid-flood an honest
// newcomer registers at the current price; once the epoch is full every
// further attempt is refused with CodePendingFull, and a second honest
// relay that starts then logs once that it waits and registers in E+1.
//
// It asserts: the chain accepts at most MaxPendingPerEpoch intentions an
// epoch and the price is PowBitsFor(accepted) at every poll; the three
// admitted relays stay admitted and are seen by the quorum in every epoch
// E..E+2 (with DropAfter 1, two missed epochs would drop them); the
// newcomer is admitted within one epoch of registering, so is the late
// relay; no junk node is admitted; and the validator's probes stay within
// ProbeBudget × the intentions accepted plus one per admitted node and
// epoch (the honest nodes answer at once).
func TestAdmissionFloodDoesNotStarveHonestNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := attackParams()
	ac := attackAttester(&ProbeCounters{})
	ground := groundKeys(int(p.MaxPendingPerEpoch))
	// The flood starts with epoch E = 1; the honest relays are admitted in
	// epoch 0. The attempts made once the epoch is full are signed ahead
	// (before the chain starts: the race detector makes signing slow), cheap ones (PowBits) and some at
	// the price of a full epoch, from fresh and from ground keys.
	const attempts = 10_000
	const E uint64 = 1
	rest := make([][]byte, attempts-2*int(p.MaxPendingPerEpoch-1))
	junkKeys := keysOf("junk", 100)
	var sg sync.WaitGroup
	for w := range 2 {
		sg.Add(1)
		go func() {
			defer sg.Done()
			for i := w; i < len(rest); i += 2 {
				key := junkKeys[i%len(junkKeys)]
				if i%3 == 1 {
					key = ground[i%len(ground)]
				}
				bits := p.PowBits
				if i%100 == 0 {
					bits = p.PowBitsFor(p.MaxPendingPerEpoch)
				}
				// Each attempt a new body: other addresses.
				addrs := []string{fmt.Sprintf("/ip4/192.0.2.%d/tcp/%d", 1+i%250, 1+i)}
				tx, err := NewIntention(ctx, attackChainID, E, key, RoleRelay, addrs, bits)
				if err != nil {
					t.Error(err)
					return
				}
				rest[i] = tx
			}
		}()
	}
	sg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d attempts signed after %v", len(rest), time.Since(start).Round(time.Millisecond))
	n := startValidatorWith(t, p, ac)
	waitHeight(t, n, 2, 10*time.Second)
	chainID := n.ChainID()

	honest := keysOf("attack-honest", 3)
	for _, k := range honest {
		startRelay(ctx, t, n, k, nil)
	}
	admittedNow := func(k ed25519.PrivateKey) bool {
		v, ok := nodeView(t, n, idOf(k))
		return ok && v.Status == StatusAdmitted.String()
	}
	waitFor(t, 15*time.Second, "three honest relays admitted", func() bool {
		return admittedNow(honest[0]) && admittedNow(honest[1]) && admittedNow(honest[2])
	})
	w := &epochWatch{accepted: map[uint64]uint32{}, seen: map[uint64]map[sphinx.NodeID]bool{}}
	w.watch(idOf(honest[0]), idOf(honest[1]), idOf(honest[2]))
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.run(wctx, t, n, p) }()
	defer func() { wcancel(); wg.Wait() }()

	junkAddrs := func(i int) []string {
		switch i % 3 {
		case 0:
			return []string{tarpit(t)}
		case 1:
			return []string{fmt.Sprintf("/ip4/192.0.2.%d/tcp/4001", 1+i%250), fmt.Sprintf("/ip4/198.51.100.%d/tcp/4001", 1+i%250)}
		}
		return []string{fmt.Sprintf("/ip4/240.0.%d.%d/tcp/4001", i/250%250, 1+i%250)}
	}
	if e := admissionNow(t, n).Epoch; e != E-1 {
		t.Fatalf("the honest relays were admitted only in epoch %d", e)
	}
	waitFor(t, 20*time.Second, fmt.Sprintf("epoch %d", E), func() bool { return admissionNow(t, n).Epoch >= E })
	before := ac.Stats.Snapshot()
	t.Logf("epoch %d: flood starts after %v", E, time.Since(start).Round(time.Millisecond))
	sent, taken := 0, 0 // attempts made; intentions the chain took this epoch
	var junk []sphinx.NodeID
	priced := func(upto uint32) {
		for uint32(taken) < upto {
			key := ground[len(junk)]
			addrs := junkAddrs(len(junk))
			bits := p.PowBitsFor(uint32(taken))
			weak := exactIntention(t, chainID, E, key, addrs, bits-1)
			if err := asTxError(n.BroadcastTx(ctx, weak)); CodeOf(err) != CodeInsufficientWork {
				t.Fatalf("intention %d of epoch %d with %d bits, one under the price: %v", taken, E, bits-1, err)
			}
			if err := asTxError(n.BroadcastTx(ctx, exactIntention(t, chainID, E, key, addrs, bits))); err != nil {
				t.Fatalf("intention %d of epoch %d at the price of %d bits: %v", taken, E, bits, err)
			}
			sent += 2
			taken++
			junk = append(junk, idOf(key))
		}
	}
	priced(p.MaxPendingPerEpoch / 2)

	// An honest newcomer registers mid-flood, at the current price.
	newcomer := detKey("attack-newcomer", 0)
	startRelay(ctx, t, n, newcomer, nil)
	waitFor(t, 5*time.Second, "the newcomer's intention on chain", func() bool { _, ok := nodeView(t, n, idOf(newcomer)); return ok })
	taken++
	priced(p.MaxPendingPerEpoch)

	// The epoch is full: the rest of the flood is refused, cheap or not,
	// in process and over RPC. A second honest relay starts now.
	lateLog := &atomic.Int64{}
	late := detKey("attack-late", 0)
	rpc, err := DialChain(ctx, n.RPC())
	if err != nil {
		t.Fatal(err)
	}
	full := 0
	junkStart := time.Now()
	for i, tx := range rest {
		var chain Chain = n
		if i%100 == 0 {
			chain = rpc
		}
		err := asTxError(chain.BroadcastTx(ctx, tx))
		sent++
		switch CodeOf(err) {
		case CodePendingFull:
			full++
		default:
			t.Fatalf("attempt %d after the epoch filled: %v", sent, err)
		}
		if i == 0 {
			startRelay(ctx, t, n, late, slog.New(msgCounter{prefix: "admission full", n: lateLog}))
		}
		if i%50 == 0 && admissionNow(t, n).Epoch != E {
			t.Fatalf("epoch %d ended after %d attempts: the flood is too slow for this machine", E, sent)
		}
	}
	t.Logf("%d refused attempts in %v", len(rest), time.Since(junkStart).Round(time.Millisecond))
	floodTime := time.Since(start)
	t.Logf("epoch %d: %d attempts, %d intentions on chain (%d the attacker's, 1 the newcomer's), %d refused as full; flood over after %v",
		E, sent, taken, len(junk), full, floodTime.Round(time.Millisecond))

	// The newcomer is admitted within one epoch of registering; the late
	// relay registers in E+1 and is admitted within one epoch too.
	waitFor(t, 15*time.Second, "the newcomer admitted", func() bool { return admittedNow(newcomer) })
	waitFor(t, 20*time.Second, "the late relay admitted", func() bool { return admittedNow(late) })
	nv, _ := nodeView(t, n, idOf(newcomer))
	lv, _ := nodeView(t, n, idOf(late))
	t.Logf("newcomer registered in epoch %d, admitted in %d; late relay registered in %d, admitted in %d", nv.Registered, nv.Admitted, lv.Registered, lv.Admitted)
	if nv.Registered != E || nv.Admitted > E+1 {
		t.Errorf("newcomer registered in epoch %d, admitted in %d; want registered in %d and admitted by %d", nv.Registered, nv.Admitted, E, E+1)
	}
	if lv.Registered != E+1 || lv.Admitted > E+2 {
		t.Errorf("late relay registered in epoch %d, admitted in %d; want %d and by %d", lv.Registered, lv.Admitted, E+1, E+2)
	}
	if got := lateLog.Load(); got != 1 {
		t.Errorf("the late relay logged %d times that admission was full, want once", got)
	}
	w.watch(idOf(newcomer))

	// Watch the honest relays to the end of epoch E+2.
	waitFor(t, 20*time.Second, fmt.Sprintf("epoch %d", E+3), func() bool { return admissionNow(t, n).Epoch >= E+3 })
	after := ac.Stats.Snapshot()
	wcancel()
	wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lost {
		t.Errorf("honest relay lost: %s", l)
	}
	for _, b := range w.badPrice {
		t.Errorf("price off the formula: %s", b)
	}
	for e := E; e <= E+2; e++ {
		for _, k := range honest {
			if !w.seen[e][idOf(k)] {
				t.Errorf("epoch %d: honest relay %v never seen by the quorum", e, idOf(k))
			}
		}
		if w.accepted[e] > p.MaxPendingPerEpoch {
			t.Errorf("epoch %d accepted %d intentions, the cap is %d", e, w.accepted[e], p.MaxPendingPerEpoch)
		}
	}
	if w.accepted[E] != p.MaxPendingPerEpoch || admissionNow(t, n).PowBits != p.PowBits {
		t.Errorf("epoch %d accepted %d, want the cap %d", E, w.accepted[E], p.MaxPendingPerEpoch)
	}
	for _, id := range junk {
		if v, ok := nodeView(t, n, id); ok && v.Status != StatusPending.String() {
			t.Errorf("junk node %v is %s", id, v.Status)
		}
	}
	// The probe work of epochs E..E+2: at most ProbeBudget probes per
	// accepted intention (E's 16 and the late relay's), and per admitted
	// node and epoch ProbeBudget, of which an honest node needs one.
	pendingAccepted := uint64(taken + 1)
	admittedEpochs := uint64(3*len(honest) + 3 + 2)
	work := ProbeCount{
		PendingStarted: after.PendingStarted - before.PendingStarted, PendingFailed: after.PendingFailed - before.PendingFailed,
		AdmittedStarted: after.AdmittedStarted - before.AdmittedStarted, AdmittedFailed: after.AdmittedFailed - before.AdmittedFailed,
	}
	t.Logf("probes in epochs %d-%d: %d of pending nodes (%d failed), %d of admitted nodes (%d failed); bound %d + %d",
		E, E+2, work.PendingStarted, work.PendingFailed, work.AdmittedStarted, work.AdmittedFailed,
		uint64(ac.ProbeBudget)*pendingAccepted, admittedEpochs)
	if work.PendingStarted > uint64(ac.ProbeBudget)*pendingAccepted {
		t.Errorf("%d probes of pending nodes, over the budget %d × %d intentions", work.PendingStarted, ac.ProbeBudget, pendingAccepted)
	}
	if work.Started() > uint64(ac.ProbeBudget)*pendingAccepted+admittedEpochs+uint64(ac.ProbeBudget)*work.AdmittedFailed {
		t.Errorf("%d probes in all, over the bound", work.Started())
	}
	t.Logf("wall time %v", time.Since(start).Round(time.Millisecond))
}
