package transport

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewRejectsBadConfig(t *testing.T) {
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no identity", Config{PacketSize: 10}},
		{"a short identity", Config{Identity: key[:32], PacketSize: 10}},
		{"no packet size", Config{Identity: key}},
		{"a packet size the header cannot carry", Config{Identity: key, PacketSize: 1 << 16}},
		{"a negative send queue", Config{Identity: key, PacketSize: 10, SendQueue: -1}},
		{"an unknown security protocol", Config{Identity: key, PacketSize: 10, Security: []Security{7}}},
		{"an unparsable listen address", Config{Identity: key, PacketSize: 10, ListenAddrs: []string{"127.0.0.1:80"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := New(context.Background(), tc.cfg)
			if err == nil {
				h.Close()
				t.Fatal("New accepted the config")
			}
		})
	}
}

func TestAddPeerValidatesItsInput(t *testing.T) {
	h := startHost(t, Config{})
	other := startHost(t, Config{})
	third := startHost(t, Config{})
	good := other.PeerInfo()
	tests := []struct {
		name    string
		info    PeerInfo
		wantErr error
	}{
		{"a node id that is not the key's hash", PeerInfo{ID: third.ID(), PublicKey: good.PublicKey}, ErrNodeIDMismatch},
		{"a short key", PeerInfo{PublicKey: good.PublicKey[:31]}, ErrNotEd25519},
		{"its own key", h.PeerInfo(), ErrSelf},
		{"an address of another peer", PeerInfo{PublicKey: good.PublicKey, Addrs: third.Addrs()}, nil},
		{"an unparsable address", PeerInfo{PublicKey: good.PublicKey, Addrs: []string{"/ip4/1.2.3/tcp/1"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := h.AddPeer(tc.info)
			if err == nil {
				t.Fatal("AddPeer accepted it")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	t.Run("a key with its matching id and no addresses", func(t *testing.T) {
		if err := h.AddPeer(PeerInfo{ID: good.ID, PublicKey: good.PublicKey}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSendReportsWhyItFails(t *testing.T) {
	h := startHost(t, Config{})
	other := startHost(t, Config{})
	pkt := make([]byte, testPacketSize)
	if err := h.TrySend(other.ID(), pkt); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("send to unknown peer: %v", err)
	}
	if err := h.TrySend(h.ID(), pkt); !errors.Is(err, ErrSelf) {
		t.Errorf("send to self: %v", err)
	}
	if err := h.AddPeer(other.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, testPacketSize - 1, testPacketSize + 1} {
		if err := h.Send(context.Background(), other.ID(), make([]byte, n)); !errors.Is(err, ErrPacketSize) {
			t.Errorf("send of %d bytes: %v", n, err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.TrySend(other.ID(), pkt); !errors.Is(err, ErrClosed) {
		t.Errorf("send after close: %v", err)
	}
	if err := h.AddPeer(other.PeerInfo()); !errors.Is(err, ErrClosed) {
		t.Errorf("AddPeer after close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRemovePeerDropsItsQueue(t *testing.T) {
	h := startHost(t, Config{})
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// A peer at an address nobody listens on: packets wait in its queue.
	dead := PeerInfo{PublicKey: key.Public().(ed25519.PublicKey), Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}
	id := NodeIDFromPublicKey(dead.PublicKey)
	if err := h.AddPeer(dead); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := h.TrySend(id, make([]byte, testPacketSize)); err != nil {
			t.Fatal(err)
		}
	}
	h.RemovePeer(id)
	if err := h.TrySend(id, make([]byte, testPacketSize)); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("send after RemovePeer: %v", err)
	}
	eventually(t, 5*time.Second, "dropped packets counted", func() bool {
		// Those queued and the one the sender held while dialing.
		return testutil.ToFloat64(h.m.dropped.WithLabelValues(dropPeerRemoved)) == 5
	})
}

func TestContextEndClosesTheHost(t *testing.T) {
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := New(ctx, Config{Identity: key, PacketSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	eventually(t, 5*time.Second, "host closed", func() bool {
		return errors.Is(h.TrySend(NodeID{1}, make([]byte, 16)), ErrClosed)
	})
}

func TestMetricsRegisterOncePerRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, node := range []string{"a", "b"} {
		startHost(t, Config{Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"node": node}, reg)})
	}
	n, err := testutil.GatherAndCount(reg, "strata_transport_peers")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("strata_transport_peers series = %d, want 2", n)
	}

	shared := prometheus.NewRegistry()
	first := startHost(t, Config{Registerer: shared})
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(context.Background(), Config{Identity: key, PacketSize: 16, Registerer: shared})
	if err == nil {
		h.Close()
		t.Fatal("two hosts registered the same metrics in one registry")
	}
	if !strings.Contains(err.Error(), "already registered") {
		t.Errorf("error %q does not say why", err)
	}
	// Close unregisters, so a restarted host can register again.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	startHost(t, Config{Registerer: shared})
}
