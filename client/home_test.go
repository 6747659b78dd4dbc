package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// homeFixture is a Home on a real host, a first-stratum peer that counts
// what the home forwards to it, and client hosts connected to the home.
type homeFixture struct {
	host  *transport.Host
	home  *Home
	geo   sphinx.Geometry
	first *transport.Host // a first-stratum relay (counts what it gets)

	mu       sync.Mutex
	injected int
	got      map[transport.NodeID]int // at first, by sender
	arrived  chan transport.NodeID    // at first, when someone waits
}

// newHomeFixture starts a home of epoch whose first stratum is a real host
// and the home itself; cfg's Host, Geometry, Epoch and Inject are filled in.
func newHomeFixture(t testing.TB, epoch uint64, cfg HomeConfig) *homeFixture {
	t.Helper()
	f := &homeFixture{geo: sphinx.DefaultGeometry(), got: map[transport.NodeID]int{}, arrived: make(chan transport.NodeID, 1)}
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	firstKey, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	f.first, err = transport.New(context.Background(), transport.Config{
		Identity: firstKey, PacketSize: f.geo.PacketSize(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SendQueue: 8192,
		Handler: func(from transport.NodeID, _ []byte) {
			f.mu.Lock()
			f.got[from]++
			f.mu.Unlock()
			select {
			case f.arrived <- from:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.first.Close() })
	ready := make(chan struct{})
	f.host, err = transport.New(context.Background(), transport.Config{
		Identity: key, PacketSize: f.geo.PacketSize(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, SendQueue: 8192,
		Connected:    func(id transport.NodeID) { <-ready; f.home.Connected(id) },
		Disconnected: func(id transport.NodeID) { <-ready; f.home.Disconnected(id) },
		Entry:        func(from, next transport.NodeID, pkt []byte) { <-ready; f.home.Entry(from, next, pkt) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.host.Close() })
	if err := f.host.AddPeer(f.first.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Geometry = f.host, f.geo
	cfg.Epoch = HomeEpoch{Epoch: epoch, FirstStratum: []sphinx.NodeID{sphinx.NodeID(f.first.ID()), sphinx.NodeID(f.host.ID())},
		Rates: Rates{Payload: 2, Loop: 1, Drop: 1}}
	cfg.Inject = func([]byte) error { f.mu.Lock(); f.injected++; f.mu.Unlock(); return nil }
	f.home, err = NewHome(cfg)
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	return f
}

// dial starts a client host connected to the home but not registered; its
// pushes arrive on the returned channel.
func (f *homeFixture) dial(t testing.TB, key ed25519.PrivateKey) (*transport.Host, chan []byte) {
	t.Helper()
	got := make(chan []byte, 16)
	h, err := transport.New(context.Background(), transport.Config{
		Identity: key, PacketSize: f.geo.PacketSize(), NoListen: true, SendQueue: 8192,
		Handler: func(_ transport.NodeID, frame []byte) {
			select {
			case got <- bytes.Clone(frame):
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.AddPeer(f.host.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, f.host.ID()); err != nil {
		t.Fatal(err)
	}
	return h, got
}

// register registers key's secret at the home from h.
func (f *homeFixture) register(h *transport.Host, key ed25519.PrivateKey) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	self := sphinx.NodeID(f.host.ID())
	resp, err := h.Request(ctx, f.host.ID(), RegisterProtocol, EncodeRegister(self, DeriveHomeSecret(key, self)))
	if err == nil && !bytes.Equal(resp, registered) {
		err = errors.New("unexpected answer")
	}
	return err
}

// connect is dial and register: a client of the home.
func (f *homeFixture) connect(t testing.TB, key ed25519.PrivateKey) (*transport.Host, chan []byte) {
	t.Helper()
	if key == nil {
		key = newKey(t)
	}
	h, got := f.dial(t, key)
	if err := f.register(h, key); err != nil {
		t.Fatal(err)
	}
	if !f.home.bound(sphinx.NodeID(h.ID())) {
		t.Fatal("registered, yet not bound")
	}
	return h, got
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	k, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (f *homeFixture) payload(b byte) []byte {
	p := make([]byte, f.geo.PayloadSize)
	for i := range p {
		p[i] = b
	}
	return p
}

func (f *homeFixture) token(key ed25519.PrivateKey, epoch uint64) sphinx.DeliveryToken {
	return DeriveHomeSecret(key, sphinx.NodeID(f.host.ID())).Token(epoch)
}

// expectPush waits for a push of id carrying payload.
func (f *homeFixture) expectPush(t *testing.T, got chan []byte, id sphinx.SURBID, payload []byte) {
	t.Helper()
	select {
	case frame := <-got:
		gid, gp, err := ParsePush(f.geo, frame)
		if err != nil || gid != id || !bytes.Equal(gp, payload) {
			t.Fatalf("push %x (err %v), want %x", gid, err, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push")
	}
}

func (f *homeFixture) drops(reason string) float64 {
	return testutil.ToFloat64(f.home.m.drops.WithLabelValues(reason))
}

func (f *homeFixture) received(from transport.NodeID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[from]
}

// TestHomeRoutesTokensToTheirClients: two registered clients on one home
// each get the packets of their own tokens, for the previous, current and
// next epoch; every other token — the old public formula, another home's
// token of the same client, a random one, out-of-window epochs — is
// dropped and counted.
func TestHomeRoutesTokensToTheirClients(t *testing.T) {
	f := newHomeFixture(t, 5, HomeConfig{})
	self := sphinx.NodeID(f.host.ID())
	ka, kb := newKey(t), newKey(t)
	a, gotA := f.connect(t, ka)
	_, gotB := f.connect(t, kb)
	if got := testutil.ToFloat64(f.home.m.clients); got != 2 {
		t.Fatalf("strata_home_nodes %v, want 2", got)
	}
	for i, e := range []uint64{4, 5, 6} {
		var id sphinx.SURBID
		rand.Read(id[:])
		f.home.Deliver(f.token(ka, e), id, f.payload(byte(i)))
		f.expectPush(t, gotA, id, f.payload(byte(i)))
		f.home.Deliver(f.token(kb, e), id, f.payload(byte(i+10)))
		f.expectPush(t, gotB, id, f.payload(byte(i+10)))
	}
	var random sphinx.DeliveryToken
	rand.Read(random[:])
	for _, tok := range []sphinx.DeliveryToken{
		f.token(ka, 3), f.token(ka, 7),
		oldPublicToken(sphinx.NodeID(a.ID()), self, 5),
		DeriveHomeSecret(ka, sphinx.NodeID{1}).Token(5),
		random,
	} {
		f.home.Deliver(tok, sphinx.SURBID{1}, f.payload(1))
	}
	if got := f.drops("unknown_token"); got != 5 {
		t.Fatalf("unknown_token drops %v, want 5", got)
	}
	// A payload of the wrong size is refused, not pushed.
	f.home.Deliver(f.token(ka, 5), sphinx.SURBID{2}, []byte("short"))
	if got := f.drops("malformed"); got != 1 {
		t.Fatalf("malformed drops %v", got)
	}
	// The epoch moves on: epoch 4's tokens die, 7's come alive.
	f.home.SetTopology(HomeEpoch{Epoch: 6, FirstStratum: []sphinx.NodeID{self}})
	f.home.Deliver(f.token(ka, 4), sphinx.SURBID{3}, f.payload(3))
	if got := f.drops("unknown_token"); got != 6 {
		t.Fatalf("after SetTopology: unknown_token drops %v, want 6", got)
	}
	f.home.Deliver(f.token(ka, 7), sphinx.SURBID{4}, f.payload(4))
	f.expectPush(t, gotA, sphinx.SURBID{4}, f.payload(4))
	select {
	case frame := <-gotB:
		t.Fatalf("B got a push meant for A: %x", frame[:16])
	case frame := <-gotA:
		t.Fatalf("A got an extra push: %x", frame[:16])
	default:
	}
	if got := testutil.ToFloat64(f.home.m.pushed); got != 7 {
		t.Fatalf("pushed %v, want 7", got)
	}
}

// TestHomeRegistration: a connected node that has not registered gets no
// pushes; a registration for another home, a malformed one, or one whose
// tokens are bound to another node is refused; a client that disconnects
// is forgotten and must register again after it reconnects.
func TestHomeRegistration(t *testing.T) {
	f := newHomeFixture(t, 1, HomeConfig{})
	self := sphinx.NodeID(f.host.ID())
	key := newKey(t)
	a, got := f.dial(t, key)
	eventually(t, 10*time.Second, "connected", func() bool { return f.host.IsConnected(a.ID()) })
	f.home.Deliver(f.token(key, 1), sphinx.SURBID{1}, f.payload(1))
	if d := f.drops("unknown_token"); d != 1 || f.home.bound(sphinx.NodeID(a.ID())) {
		t.Fatalf("an unregistered node's token accepted (drops %v)", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, req := range map[string][]byte{
		"another home": EncodeRegister(sphinx.NodeID{7}, DeriveHomeSecret(key, self)),
		"short":        EncodeRegister(self, DeriveHomeSecret(key, self))[:RegisterSize-1],
		"zero secret":  EncodeRegister(self, HomeSecret{}),
	} {
		if _, err := a.Request(ctx, f.host.ID(), RegisterProtocol, req); err == nil {
			t.Errorf("%s: registration accepted", name)
		}
	}
	if f.home.bound(sphinx.NodeID(a.ID())) {
		t.Fatal("a refused registration bound the node")
	}
	if err := f.register(a, key); err != nil {
		t.Fatal(err)
	}
	f.home.Deliver(f.token(key, 1), sphinx.SURBID{2}, f.payload(2))
	f.expectPush(t, got, sphinx.SURBID{2}, f.payload(2))

	// Another node presenting a's secret (stolen, or guessed) is refused:
	// the tokens are bound to a.
	thief, thiefGot := f.dial(t, newKey(t))
	if _, err := thief.Request(ctx, f.host.ID(), RegisterProtocol, EncodeRegister(self, DeriveHomeSecret(key, self))); err == nil {
		t.Fatal("a secret bound to another node was registered again")
	}
	f.home.Deliver(f.token(key, 1), sphinx.SURBID{3}, f.payload(3))
	f.expectPush(t, got, sphinx.SURBID{3}, f.payload(3))
	select {
	case <-thiefGot:
		t.Fatal("the thief got a push")
	case <-time.After(100 * time.Millisecond):
	}

	// Disconnect: forgotten; reconnect: nothing until it registers again.
	a.Close()
	eventually(t, 10*time.Second, "the home forgets the client", func() bool { return !f.home.bound(sphinx.NodeID(a.ID())) })
	f.home.Deliver(f.token(key, 1), sphinx.SURBID{4}, f.payload(4))
	if d := f.drops("unknown_token"); d != 2 {
		t.Fatalf("unknown_token drops %v, want 2", d)
	}
	b, got := f.connect(t, key)
	f.home.Deliver(f.token(key, 1), sphinx.SURBID{5}, f.payload(5))
	f.expectPush(t, got, sphinx.SURBID{5}, f.payload(5))
	if testutil.ToFloat64(f.home.m.registrations.WithLabelValues("token_taken")) != 1 {
		t.Fatal("token_taken not counted")
	}
	_ = b
}

// TestHomeEntry: a registered client's entry frames are forwarded at once
// to first-stratum relays (or injected when the home is the first hop);
// a next hop outside the first stratum, an unregistered node and a
// registration lost with the connection are refused and counted.
func TestHomeEntry(t *testing.T) {
	f := newHomeFixture(t, 1, HomeConfig{EntryRate: 10000})
	pkt := make([]byte, f.geo.PacketSize())
	key := newKey(t)
	c, _ := f.connect(t, key)
	time.Sleep(20 * time.Millisecond) // a new client's bucket starts with entryStart; let it fill
	for range 20 {
		if err := c.TrySendVia(f.host.ID(), f.first.ID(), pkt); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.TrySendVia(f.host.ID(), f.host.ID(), pkt); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "20 packets forwarded, one injected", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.got[f.host.ID()] == 20 && f.injected == 1
	})
	if f.received(c.ID()) != 0 || f.first.IsConnected(c.ID()) {
		t.Fatal("the first stratum saw the client")
	}
	// Not a first-stratum relay: another client, a made-up node.
	other, _ := f.connect(t, newKey(t))
	for _, next := range []transport.NodeID{other.ID(), {1, 2, 3}} {
		if err := c.TrySendVia(f.host.ID(), next, pkt); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "entry_route drops", func() bool { return f.drops("entry_route") == 2 })
	// A node that never registered.
	stranger, _ := f.dial(t, newKey(t))
	if err := stranger.TrySendVia(f.host.ID(), f.first.ID(), pkt); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "entry_unregistered drop", func() bool { return f.drops("entry_unregistered") == 1 })
	// A client whose connection dropped and came back without registering.
	c.Close()
	eventually(t, 10*time.Second, "forgotten", func() bool { return !f.home.bound(sphinx.NodeID(c.ID())) })
	again, _ := f.dial(t, key)
	if err := again.TrySendVia(f.host.ID(), f.first.ID(), pkt); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "entry_unregistered drop", func() bool { return f.drops("entry_unregistered") == 2 })
	if got := f.received(f.host.ID()); got != 20 {
		t.Fatalf("the first stratum got %d packets, want 20", got)
	}
	// An epoch later the old first stratum is still valid (packets built
	// just before the change), two epochs later it is not.
	if err := f.register(again, key); err != nil {
		t.Fatal(err)
	}
	f.home.SetTopology(HomeEpoch{Epoch: 2, FirstStratum: []sphinx.NodeID{sphinx.NodeID(f.host.ID())}})
	if err := again.TrySendVia(f.host.ID(), f.first.ID(), pkt); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "forwarded under the previous epoch", func() bool { return f.received(f.host.ID()) == 21 })
	f.home.SetTopology(HomeEpoch{Epoch: 3, FirstStratum: []sphinx.NodeID{sphinx.NodeID(f.host.ID())}})
	if err := again.TrySendVia(f.host.ID(), f.first.ID(), pkt); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "refused two epochs later", func() bool { return f.drops("entry_route") == 3 })
}

// TestHomeEntryRateLimit (attack): a registered client floods its home with
// entry frames far above the network's rates; the home forwards only its
// bucket's worth (counting the rest as entry_rate) while an honest client
// of the same home sending at its rate gets ≥ 99 % of its packets through.
func TestHomeEntryRateLimit(t *testing.T) {
	const rate, burst = 200.0, 20
	f := newHomeFixture(t, 1, HomeConfig{EntryRate: rate, EntryBurst: burst})
	pkt := make([]byte, f.geo.PacketSize())
	flooder, _ := f.connect(t, nil)
	honest, _ := f.connect(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { // as fast as the link takes them
		for ctx.Err() == nil {
			if flooder.TrySendVia(f.host.ID(), f.first.ID(), pkt) != nil {
				time.Sleep(100 * time.Microsecond)
			}
		}
	})
	sent := 0
	wg.Go(func() { // Poisson at half the entry rate
		for ctx.Err() == nil {
			time.Sleep(time.Duration(mrand.ExpFloat64() / (rate / 2) * float64(time.Second)))
			if honest.TrySendVia(f.host.ID(), f.first.ID(), pkt) == nil {
				sent++
			}
		}
	})
	wg.Wait()
	elapsed := time.Since(start)
	eventually(t, 10*time.Second, "the honest client's packets counted", func() bool {
		fw, dr := f.home.entryCounts(sphinx.NodeID(honest.ID()))
		return int(fw+dr) == sent
	})
	// The flooder's last frames may still be on their way: wait until
	// the per-client counts add up to the home's counter.
	var fw, dr, ffw, fdr uint64
	eventually(t, 10*time.Second, "the flood counted", func() bool {
		fw, dr = f.home.entryCounts(sphinx.NodeID(honest.ID()))
		ffw, fdr = f.home.entryCounts(sphinx.NodeID(flooder.ID()))
		return f.drops("entry_rate") == float64(fdr+dr)
	})
	t.Logf("honest: %d sent, %d forwarded, %d dropped; flooder: %d forwarded, %d dropped in %v", sent, fw, dr, ffw, fdr, elapsed)
	if float64(fw) < 0.99*float64(sent) || sent < 100 {
		t.Fatalf("honest client: %d of %d forwarded", fw, sent)
	}
	// What it got through: its rate over the flood (plus the frames
	// still arriving while the counts settled), and the burst.
	if limit := rate*(time.Since(start).Seconds()) + burst; float64(ffw) > limit || fdr == 0 {
		t.Fatalf("flooder: %d forwarded (limit %.0f), %d dropped", ffw, limit, fdr)
	}
}

// TestPushFrameCodec: EncodePush and ParsePush agree, and ParsePush
// refuses frames of the wrong size or with nonzero padding.
func TestPushFrameCodec(t *testing.T) {
	g := sphinx.DefaultGeometry()
	frame := make([]byte, g.PacketSize())
	payload := bytes.Repeat([]byte{0xab}, g.PayloadSize)
	id := sphinx.SURBID{1, 2, 3}
	if err := EncodePush(g, frame, id, payload); err != nil {
		t.Fatal(err)
	}
	gid, gp, err := ParsePush(g, frame)
	if err != nil || gid != id || !bytes.Equal(gp, payload) {
		t.Fatalf("round trip: %x %v", gid, err)
	}
	if err := EncodePush(g, frame, id, payload[1:]); err == nil {
		t.Fatal("short payload encoded")
	}
	if _, _, err := ParsePush(g, frame[1:]); err == nil {
		t.Fatal("short frame parsed")
	}
	frame[len(frame)-1] = 1
	if _, _, err := ParsePush(g, frame); err == nil {
		t.Fatal("nonzero padding parsed")
	}
}
