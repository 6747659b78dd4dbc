package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// homeFixture is a Home on a real host and client hosts connected to it.
type homeFixture struct {
	host *transport.Host
	home *Home
	geo  sphinx.Geometry
}

func newHomeFixture(t testing.TB, epoch uint64) *homeFixture {
	t.Helper()
	f := &homeFixture{geo: sphinx.DefaultGeometry()}
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	f.host, err = transport.New(context.Background(), transport.Config{
		Identity: key, PacketSize: f.geo.PacketSize(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Connected:    func(id transport.NodeID) { <-ready; f.home.Connected(id) },
		Disconnected: func(id transport.NodeID) { <-ready; f.home.Disconnected(id) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.host.Close() })
	f.home = NewHome(f.host, f.geo, epoch, nil, nil)
	close(ready)
	return f
}

// connect starts a client host connected to the home; its pushes arrive
// on the returned channel.
func (f *homeFixture) connect(t testing.TB, key []byte) (*transport.Host, chan []byte) {
	t.Helper()
	if key == nil {
		k, err := transport.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	got := make(chan []byte, 16)
	h, err := transport.New(context.Background(), transport.Config{
		Identity: key, PacketSize: f.geo.PacketSize(), NoListen: true,
		Handler: func(_ transport.NodeID, frame []byte) { got <- bytes.Clone(frame) },
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
	eventually(t, 10*time.Second, "the home binds the client", func() bool { return f.home.bound(sphinx.NodeID(h.ID())) })
	return h, got
}

func (f *homeFixture) payload(b byte) []byte {
	p := make([]byte, f.geo.PayloadSize)
	for i := range p {
		p[i] = b
	}
	return p
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
	return testutil.ToFloat64(f.home.drops.WithLabelValues(reason))
}

// TestHomeRoutesTokensToTheirClients: two clients on one home each get the
// packets of their own tokens, for the previous, current and next epoch;
// other tokens are dropped and counted.
func TestHomeRoutesTokensToTheirClients(t *testing.T) {
	f := newHomeFixture(t, 5)
	self := sphinx.NodeID(f.host.ID())
	a, gotA := f.connect(t, nil)
	b, gotB := f.connect(t, nil)
	idA, idB := sphinx.NodeID(a.ID()), sphinx.NodeID(b.ID())
	if got := testutil.ToFloat64(f.home.nodes); got != 2 {
		t.Fatalf("strata_home_nodes %v, want 2", got)
	}
	for i, e := range []uint64{4, 5, 6} {
		var id sphinx.SURBID
		rand.Read(id[:])
		f.home.Deliver(HomeToken(idA, self, e), id, f.payload(byte(i)))
		f.expectPush(t, gotA, id, f.payload(byte(i)))
		f.home.Deliver(HomeToken(idB, self, e), id, f.payload(byte(i+10)))
		f.expectPush(t, gotB, id, f.payload(byte(i+10)))
	}
	// Epochs out of the window, another home's token, a random token.
	for _, tok := range []sphinx.DeliveryToken{
		HomeToken(idA, self, 3), HomeToken(idA, self, 7), HomeToken(idA, sphinx.NodeID{1}, 5), {9, 9, 9},
	} {
		f.home.Deliver(tok, sphinx.SURBID{1}, f.payload(1))
	}
	if got := f.drops("unknown_token"); got != 4 {
		t.Fatalf("unknown_token drops %v, want 4", got)
	}
	// A payload of the wrong size is refused, not pushed.
	f.home.Deliver(HomeToken(idA, self, 5), sphinx.SURBID{2}, []byte("short"))
	if got := f.drops("malformed"); got != 1 {
		t.Fatalf("malformed drops %v", got)
	}
	// The epoch moves on: epoch 4's tokens die, 7's come alive.
	f.home.SetEpoch(6)
	f.home.Deliver(HomeToken(idA, self, 4), sphinx.SURBID{3}, f.payload(3))
	if got := f.drops("unknown_token"); got != 5 {
		t.Fatalf("after SetEpoch: unknown_token drops %v, want 5", got)
	}
	f.home.Deliver(HomeToken(idA, self, 7), sphinx.SURBID{4}, f.payload(4))
	f.expectPush(t, gotA, sphinx.SURBID{4}, f.payload(4))
	select {
	case frame := <-gotB:
		t.Fatalf("B got a push meant for A: %x", frame[:16])
	case frame := <-gotA:
		t.Fatalf("A got an extra push: %x", frame[:16])
	default:
	}
	if got := testutil.ToFloat64(f.home.pushed); got != 7 {
		t.Fatalf("pushed %v, want 7", got)
	}
}

// TestHomeReconnect: a client that disconnects is forgotten (its packets
// dropped), and bound again when it reconnects with the same identity.
func TestHomeReconnect(t *testing.T) {
	f := newHomeFixture(t, 1)
	self := sphinx.NodeID(f.host.ID())
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.connect(t, key)
	id := sphinx.NodeID(a.ID())
	a.Close()
	eventually(t, 10*time.Second, "the home forgets the client", func() bool { return !f.home.bound(id) })
	f.home.Deliver(HomeToken(id, self, 1), sphinx.SURBID{1}, f.payload(1))
	if got := f.drops("unknown_token"); got != 1 {
		t.Fatalf("unknown_token drops %v", got)
	}
	_, got := f.connect(t, key)
	f.home.Deliver(HomeToken(id, self, 1), sphinx.SURBID{2}, f.payload(2))
	f.expectPush(t, got, sphinx.SURBID{2}, f.payload(2))
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
