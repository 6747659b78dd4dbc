package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strata-mix/strata/transport"
)

// TestRefusingHomeKeepsNoConnection (attack, A2 as a would-be home): a
// relay that accepts the client's connection but refuses its registration
// (it runs no home service, or lies) must not keep a connection from the
// client: that connection would give it the client's address and identity
// while the client sends through another home. SetHome to it fails, the
// client drops the connection it opened, keeps its home, and its loops
// still come back through it.
func TestRefusingHomeKeepsNoConnection(t *testing.T) {
	n := mustNet(t, defaultNet())
	a := mustClient(t, n, 0, Rates{Payload: 20, Loop: 20})
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// The refusing relay: a real host that answers no registration.
	liar, err := transport.New(context.Background(), transport.Config{
		Identity: key, PacketSize: n.format.Geometry().PacketSize(), ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer liar.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.SetHome(ctx, liar.PeerInfo())
	if err == nil {
		t.Fatal("SetHome to a relay that refuses the registration succeeded")
	}
	if !errors.Is(err, transport.ErrRequestRefused) {
		t.Logf("SetHome: %v", err)
	}
	eventually(t, 5*time.Second, "the connection to the refusing relay closed", func() bool {
		return !liar.IsConnected(a.host.ID()) && !a.host.IsConnected(liar.ID())
	})
	if a.Home() != n.relays[0].id() {
		t.Fatalf("home %v after a failed SetHome", a.Home())
	}
	base := a.Stats().LoopsReturned
	eventually(t, 20*time.Second, "loops back through the old home", func() bool { return a.Stats().LoopsReturned >= base+5 })
	if liar.IsConnected(a.host.ID()) {
		t.Fatal("the refusing relay is connected to the client again")
	}
}
