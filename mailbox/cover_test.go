package mailbox

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// startCover runs the mailbox node's loop cover on tb at rate loops/s, as
// node.RunMailbox does: relay.Cover with the node's own hop, a view of the
// testbed's three strata, SendCover as its send and Returned as the node's
// Local.Loop. It returns the cover's registry and a stop function that
// returns once the cover stopped sending.
func startCover(t *testing.T, tb *testbed, rate float64) (*prometheus.Registry, func()) {
	t.Helper()
	layers := [][]sphinx.NodeID{{tb.mix[0].hop.ID}, {tb.mix[1].hop.ID}, {tb.mix[2].hop.ID}}
	g, err := pki.NewGraphFromLayers(layers, 1, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[sphinx.NodeID]sphinx.PublicKey{tb.mbox.hop.ID: tb.mbox.hop.Key}
	for _, m := range tb.mix {
		keys[m.hop.ID] = m.hop.Key
	}
	v := &relay.View{Epoch: 1, Graph: g, Mailboxes: []sphinx.NodeID{tb.mbox.hop.ID}, MixKeys: keys, LoopRate: rate}
	reg := prometheus.NewRegistry()
	cover, err := relay.NewCover(tb.f, tb.mbox.hop, func() *relay.View { return v }, tb.node.SendCover, reg)
	if err != nil {
		t.Fatal(err)
	}
	returned := cover.Returned
	tb.loop.Store(&returned)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { cover.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return reg, stop
}

// metric is the value of the counter name in reg (0 if absent).
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func repliesSent(n *Node) float64 {
	total := 0.0
	for _, op := range []Op{OpOK, OpDeliver, OpNeedSURBs, OpError} {
		total += testutil.ToFloat64(n.m.replies.WithLabelValues(opName(op)))
	}
	return total
}

// TestNodeLoopCoverThroughRelays: the mailbox node's loops leave at about
// the configured rate through its one send path, cross the three strata's
// real relays and come back to the node (the loop metrics count them); at
// the first-stratum relay the node's packets include its loops while no
// reply is due, so "every packet from a mailbox node is a reply" is false;
// and when replies are due, the first-stratum relay receives replies and
// loops from the node over the same link, in the same numbers the node
// sent.
func TestNodeLoopCoverThroughRelays(t *testing.T) {
	tb := newTestbed(t, Config{})
	mboxID := tb.mbox.hop.ID
	const rate, window = 20.0, 4 * time.Second
	reg, stop := startCover(t, tb, rate)

	time.Sleep(window)
	stop()
	sent := metric(t, reg, "strata_relay_loops_sent_total")
	// Poisson(80) is under 50 or over 130 with probability < 1e-4; the
	// bounds are wider still for a loaded machine (a late timer sends
	// fewer, never more).
	if want := rate * window.Seconds(); sent < 0.4*want || sent > 1.7*want {
		t.Fatalf("%v loops sent in %v at %v/s, want about %v", sent, window, rate, want)
	}
	waitUntil(t, "every loop came back", func() bool { return metric(t, reg, "strata_relay_loops_returned_total") == sent })
	if r := repliesSent(tb.node); r != 0 {
		t.Fatalf("%v replies sent with no request", r)
	}
	if got := tb.mix[0].receivedFrom(mboxID); float64(got) != sent {
		t.Fatalf("L1 received %d packets from the mailbox node while no reply was due, want its %v loops", got, sent)
	}
	for i, m := range tb.mix[1:] {
		if got := m.receivedFrom(mboxID); got != 0 {
			t.Fatalf("L%d received %d packets straight from the mailbox node", i+2, got)
		}
	}

	// Replies and loops together: L1 sees the node's packets add up, one
	// link, one size (the transport carries only whole packets).
	reg, stop = startCover(t, tb, rate)
	owner := tb.newUser()
	box := owner.box(0)
	tb.send(owner, &Request{Op: OpCreate, Mailbox: box, Plugin: Ed25519Auth{}.ID(),
		Credential: owner.key.Public().(ed25519.PublicKey), SURBs: tb.surbs(owner, 5)})
	expectOK(t, tb.next(owner), OpCreate)
	for i := range 2 {
		tb.send(tb.newUser(), &Request{Op: OpPut, Mailbox: box, Message: []byte{byte(i)}})
	}
	waitUntil(t, "the puts were pushed", func() bool { return testutil.ToFloat64(tb.node.m.pushed) == 2 })
	time.Sleep(time.Second)
	stop()
	loops := sent + metric(t, reg, "strata_relay_loops_sent_total")
	waitUntil(t, "L1 received every reply and loop", func() bool {
		return float64(tb.mix[0].receivedFrom(mboxID)) == loops+repliesSent(tb.node)
	})
	if metric(t, reg, "strata_relay_loops_sent_total") == 0 {
		t.Fatal("no loop sent while replies were due")
	}
	if d := tb.dropped(); len(d) != 0 {
		t.Fatalf("node dropped %v", d)
	}
}

// TestNodeRefusesSURBsOutsideTheFirstStratum: a user hands the node SURBs
// whose first hop is a node that is not a first-stratum relay — a
// second-stratum relay, and a node the mailbox host knows but that is no
// relay at all. The node refuses them before building the reply, counts
// them, sends nothing to those nodes and opens no connection to them;
// SendCover refuses such a hop too. Honest replies through the same node
// meanwhile are delivered: the put's acknowledgement, and the messages of
// the refused puts pushed to the owner.
func TestNodeRefusesSURBsOutsideTheFirstStratum(t *testing.T) {
	tb := newTestbed(t, Config{})
	mboxID := tb.mbox.hop.ID
	var dialled, received atomic.Int64
	idk, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	victim, err := transport.New(context.Background(), transport.Config{
		Identity: idk, PacketSize: tb.f.Geometry().PacketSize(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Handler:   func(transport.NodeID, []byte) { received.Add(1) },
		Connected: func(transport.NodeID) { dialled.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Close() })
	// The mailbox host could reach it: without the check a SURB naming it
	// would open a connection.
	if err := tb.mbox.host.AddPeer(victim.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	victimHop := sphinx.Hop{ID: sphinx.NodeID(victim.ID())}
	_, victimHop.Key, _ = sphinx.GenerateKey(rand.Reader)

	owner, sender := tb.newUser(), tb.newUser()
	box := owner.box(0)
	tb.send(owner, &Request{Op: OpCreate, Mailbox: box, Plugin: Ed25519Auth{}.ID(),
		Credential: owner.key.Public().(ed25519.PublicKey), SURBs: tb.surbs(owner, 5)})
	expectOK(t, tb.next(owner), OpCreate)
	tb.send(owner, &Request{Op: OpStock, Mailbox: box, SURBs: tb.surbs(owner, 5)})
	waitUntil(t, "the stock holds 9 SURBs", func() bool { return tb.node.Stock(box) == 9 })

	bad := [][]sphinx.Hop{
		{tb.mix[1].hop, tb.mix[2].hop, tb.home.hop},            // starts at L2
		{victimHop, tb.mix[1].hop, tb.mix[2].hop, tb.home.hop}, // starts at a non-relay
	}
	msgs := [][]byte{[]byte("through a SURB from L2"), []byte("through a SURB to a stranger")}
	for i, path := range bad {
		s, _, _, err := tb.f.NewSURB(rand.Reader, path, sender.token, sphinx.DelayPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: [][]byte{b}, Message: msgs[i]})
		want := float64(i + 1)
		waitUntil(t, "the SURB is refused", func() bool {
			return testutil.ToFloat64(tb.node.m.dropped.WithLabelValues("first_hop")) == want
		})
	}
	// The cover path refuses the same hops.
	pkt := make([]byte, tb.f.Geometry().PacketSize())
	for _, to := range []sphinx.NodeID{tb.mix[1].hop.ID, victimHop.ID} {
		if err := tb.node.SendCover(context.Background(), to, pkt); !errors.Is(err, ErrFirstHop) {
			t.Fatalf("SendCover to %v: %v, want ErrFirstHop", to, err)
		}
	}

	// Honest traffic: the stored messages reach the owner, an honest put
	// is acknowledged.
	tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: []byte("honest")})
	expectOK(t, tb.next(sender), OpPut)
	got := map[string]bool{}
	for len(got) < 3 {
		for _, m := range messagesOf(tb.nextOp(owner, OpDeliver)) {
			got[string(m)] = true
		}
	}
	for _, m := range append(msgs, []byte("honest")) {
		if !got[string(m)] {
			t.Fatalf("owner got %v, missing %q", got, m)
		}
	}
	// A dial would have happened long before the honest round trip ended;
	// give it a moment more.
	time.Sleep(500 * time.Millisecond)
	if n, r := dialled.Load(), received.Load(); n != 0 || r != 0 || tb.mbox.host.IsConnected(victim.ID()) {
		t.Fatalf("the node connected to the stranger %d times and sent it %d packets", n, r)
	}
	if r := tb.mix[1].receivedFrom(mboxID); r != 0 {
		t.Fatalf("L2 received %d packets straight from the mailbox node", r)
	}
	if d := testutil.ToFloat64(tb.node.m.dropped.WithLabelValues("first_hop")); d != 4 {
		t.Fatalf("first_hop drops %v, want 2 SURBs and 2 cover sends", d)
	}
	if n := tb.bad.Load(); n != 0 {
		t.Errorf("%d deliveries did not open or decode", n)
	}
}

// TestFirstHopsKeepsCurrentAndPreviousEpoch: the allowed first hops are the
// first stratum of the current and the previous epoch, nothing older, and
// nothing before the first Set; the previous epoch's stratum counts also
// when it is set after the current one (a node started mid-epoch), so an
// honest SURB made just before the epoch change is not refused.
func TestFirstHopsKeepsCurrentAndPreviousEpoch(t *testing.T) {
	a, b, c, d := sphinx.NodeID{1}, sphinx.NodeID{2}, sphinx.NodeID{3}, sphinx.NodeID{4}
	var f FirstHops
	if f.Allowed(a) {
		t.Fatal("the zero FirstHops allows a hop")
	}
	steps := []struct {
		name    string
		epoch   uint64
		stratum []sphinx.NodeID
		allowed []sphinx.NodeID
		refused []sphinx.NodeID
	}{
		{"the first epoch's stratum is allowed", 5, []sphinx.NodeID{a}, []sphinx.NodeID{a}, []sphinx.NodeID{b, c}},
		{"a re-published epoch replaces its stratum", 5, []sphinx.NodeID{b}, []sphinx.NodeID{b}, []sphinx.NodeID{a}},
		{"the next epoch keeps the previous stratum", 6, []sphinx.NodeID{c}, []sphinx.NodeID{b, c}, []sphinx.NodeID{a}},
		{"an epoch older than the previous is ignored", 4, []sphinx.NodeID{d}, []sphinx.NodeID{b, c}, []sphinx.NodeID{d}},
		{"the previous epoch read after the current replaces the previous stratum", 5, []sphinx.NodeID{a}, []sphinx.NodeID{a, c}, []sphinx.NodeID{b, d}},
		{"two epochs on, the older strata are gone", 8, []sphinx.NodeID{d}, []sphinx.NodeID{d}, []sphinx.NodeID{a, b, c}},
		{"started mid-epoch: the current epoch, then the previous", 20, []sphinx.NodeID{a}, []sphinx.NodeID{a}, []sphinx.NodeID{b, d}},
		{"... the previous epoch's stratum is allowed too", 19, []sphinx.NodeID{b}, []sphinx.NodeID{a, b}, []sphinx.NodeID{c, d}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			f.Set(s.epoch, s.stratum)
			for _, id := range s.allowed {
				if !f.Allowed(id) {
					t.Errorf("%v refused", id)
				}
			}
			for _, id := range s.refused {
				if f.Allowed(id) {
					t.Errorf("%v allowed", id)
				}
			}
		})
	}
}

// BenchmarkFirstHopsAllowed measures the first-hop check every reply and
// loop of a mailbox node passes, with a first stratum of 64 relays in
// each of two epochs.
func BenchmarkFirstHopsAllowed(b *testing.B) {
	var f FirstHops
	for e := range uint64(2) {
		ids := make([]sphinx.NodeID, 64)
		for i := range ids {
			rand.Read(ids[i][:])
		}
		f.Set(e, ids)
	}
	var probe sphinx.NodeID
	rand.Read(probe[:])
	b.ReportAllocs()
	for b.Loop() {
		if f.Allowed(probe) {
			b.Fatal("a random id allowed")
		}
	}
}
