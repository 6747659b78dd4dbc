package node

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/strata-mix/strata/transport"
)

// TestRelayRefusesNoiseOnlyPeers runs relays as `strata relay` does, with
// the default config, and checks that a peer offering only classical Noise
// cannot connect to one, while a default (TLS 1.3) host connects with
// X25519MLKEM768 (P10 against A11).
func TestRelayRefusesNoiseOnlyPeers(t *testing.T) {
	relays := runStaticRelays(t, 3, 5)
	ctx := t.Context()
	key, err := transport.LoadIdentity(relays[0].cfg.Identity)
	if err != nil {
		t.Fatal(err)
	}
	relayInfo := transport.PeerInfo{PublicKey: key.Public().(ed25519.PublicKey), Addrs: []string{relays[0].addr}}
	start := func(sec []transport.Security) *transport.Host {
		id, err := transport.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		h, err := transport.New(ctx, transport.Config{Identity: id, PacketSize: 2341, NoListen: true, Security: sec})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		if err := h.AddPeer(relayInfo); err != nil {
			t.Fatal(err)
		}
		return h
	}
	connect := func(h *transport.Host) error {
		c, stop := context.WithTimeout(ctx, 5*time.Second)
		defer stop()
		return h.Connect(c, transport.NodeIDFromPublicKey(relayInfo.PublicKey))
	}
	relayID := transport.NodeIDFromPublicKey(relayInfo.PublicKey)

	// The honest host first, so the relay is known to be up and listening.
	honest := start(nil)
	deadline := time.Now().Add(20 * time.Second)
	for connect(honest) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the relay never accepted a TLS connection")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range honest.Conns(relayID) {
		if c.Security != "tls" || c.TLSVersion != "TLS 1.3" || c.KeyExchange != "X25519MLKEM768" {
			t.Errorf("honest link %+v is not TLS 1.3 with X25519MLKEM768", c)
		}
	}

	attacker := start([]transport.Security{transport.SecurityNoise})
	for range 3 {
		if err := connect(attacker); err == nil {
			t.Fatalf("a Noise-only peer connected to the relay: %+v", attacker.Conns(relayID))
		}
	}
	if attacker.IsConnected(relayID) {
		t.Fatal("the Noise-only peer holds a connection")
	}
	if !honest.IsConnected(relayID) {
		t.Fatal("the honest host lost its connection")
	}
}
