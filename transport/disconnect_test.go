package transport

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDisconnect: Disconnect closes the connection (the other side's
// Disconnected hook runs), and the node stays in the pool: the next Send
// dials it again.
func TestDisconnect(t *testing.T) {
	gone := make(chan NodeID, 4)
	col := newCollector(4)
	b := startHost(t, Config{Handler: col.handle, Disconnected: func(id NodeID) { gone <- id }})
	a := startHost(t, Config{NoListen: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.AddPeer(b.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	if err := a.Disconnect(b.ID()); err != nil {
		t.Fatal(err)
	}
	if a.IsConnected(b.ID()) {
		t.Fatal("still connected")
	}
	select {
	case id := <-gone:
		if id != a.ID() {
			t.Fatalf("Disconnected(%v), want %v", id, a.ID())
		}
	case <-ctx.Done():
		t.Fatal("the other side never saw the connection close")
	}
	if err := a.Send(ctx, b.ID(), seqPacket(7, testPacketSize)); err != nil {
		t.Fatal(err)
	}
	if got := col.next(t, 10*time.Second); got.from != a.ID() {
		t.Fatalf("packet from %v", got.from)
	}
	if err := a.Disconnect(NodeID{1}); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("unknown node: %v", err)
	}
}
