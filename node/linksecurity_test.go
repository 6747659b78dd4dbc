package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-mix/strata/transport"
)

// TestRelayRefusesNoiseOnlyPeers runs relays as `strata relay` does, with
// the default config, and checks that a peer offering only classical Noise
// cannot connect to one, while a default (TLS 1.3) host connects with
// X25519MLKEM768 (P10 against A11).
func TestRelayRefusesNoiseOnlyPeers(t *testing.T) {
	dir := t.TempDir()
	topo := StaticTopology{Epoch: 1, DelayMean: "5ms", LoopRate: 5, Successors: 8}
	var configs []*RelayConfig
	var addrs []string
	for i := range 3 {
		rd := filepath.Join(dir, fmt.Sprintf("relay%d", i))
		addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))
		entry, err := Keygen(rd+".key", rd, 1, 2, []string{addr})
		if err != nil {
			t.Fatal(err)
		}
		topo.Nodes = append(topo.Nodes, *entry)
		topo.Layers = append(topo.Layers, []string{entry.ID})
		addrs = append(addrs, addr)
		configs = append(configs, &RelayConfig{Identity: rd + ".key", DataDir: rd, Listen: []string{addr},
			Topology: filepath.Join(dir, "topology.json"), EpochLength: "1m", MaxRate: 1000})
	}
	b, _ := json.MarshalIndent(topo, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "topology.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(configs))
	for _, c := range configs {
		if err := c.check(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- RunRelay(ctx, c, nil) }()
	}
	defer func() {
		cancel()
		for range configs {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()
	key, err := transport.LoadIdentity(configs[0].Identity)
	if err != nil {
		t.Fatal(err)
	}
	relayInfo := transport.PeerInfo{PublicKey: key.Public().(ed25519.PublicKey), Addrs: []string{addrs[0]}}
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
