package pki

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// rawProbeHost starts a Strata-configured libp2p host for identity on a
// loopback port that serves handler (nil: no probe protocol at all).
func rawProbeHost(t *testing.T, identity ed25519.PrivateKey, handler network.StreamHandler) host.Host {
	t.Helper()
	opts, err := libp2pOptions(identity)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(append(opts, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if handler != nil {
		h.SetStreamHandler(ProbeProtocol, handler)
	}
	return h
}

// signingHandler answers a probe with identity's signature over msg(challenge).
func signingHandler(identity ed25519.PrivateKey, msg func(challenge []byte) []byte) network.StreamHandler {
	return func(s network.Stream) {
		defer s.Close()
		challenge := make([]byte, probeChallengeLen)
		if _, err := io.ReadFull(s, challenge); err != nil {
			_ = s.Reset()
			return
		}
		_, _ = s.Write(ed25519.Sign(identity, msg(challenge)))
	}
}

func startProbeHost(t *testing.T, identity ed25519.PrivateKey, chainID string) host.Host {
	t.Helper()
	h, err := StartProbeHost(identity, chainID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestProbeRefusesNodesThatDoNotProve is issue 16 item 7: against real
// libp2p hosts, the attester's probe (Prober.Probe) refuses a node that
// does not answer (nothing listening, no probe protocol, a stream it never
// answers, a short answer), that signs wrong (another key, another chain
// id, another challenge), that has another peer id than its registered
// key, or that answers at an address it did not register; and in the same
// prober an honest node is accepted before and after each refusal.
func TestProbeRefusesNodesThatDoNotProve(t *testing.T) {
	const chainID = testChainID
	p, err := NewProber(chainID)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	probe := func(pub [32]byte, addrs []string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return p.Probe(ctx, pub, addrs)
	}
	honestKey := detKey("honest", 0)
	honest := startProbeHost(t, honestKey, chainID)
	if err := probe(pubOf(honestKey), HostAddrs(honest)); err != nil {
		t.Fatalf("honest node refused: %v", err)
	}

	a, b := detKey("node-a", 0), detKey("node-b", 0)
	dead := startProbeHost(t, a, chainID)
	deadAddrs := HostAddrs(dead)
	dead.Close()

	silent := rawProbeHost(t, a, func(s network.Stream) {
		_, _ = io.ReadAll(s) // reads until the prober gives up; never answers
		_ = s.Reset()
	})
	short := rawProbeHost(t, a, func(s network.Stream) {
		challenge := make([]byte, probeChallengeLen)
		_, _ = io.ReadFull(s, challenge)
		_, _ = s.Write(ed25519.Sign(a, probeMessage(chainID, challenge))[:40])
		_ = s.Close()
	})
	noProtocol := rawProbeHost(t, a, nil)
	otherKey := rawProbeHost(t, a, signingHandler(b, func(c []byte) []byte { return probeMessage(chainID, c) }))
	otherChain := startProbeHost(t, a, "another-chain")
	otherChallenge := rawProbeHost(t, a, signingHandler(a, func(c []byte) []byte {
		flipped := append([]byte(nil), c...)
		flipped[0] ^= 1
		return probeMessage(chainID, flipped)
	}))
	noDomain := rawProbeHost(t, a, signingHandler(a, func(c []byte) []byte { return c }))
	impostor := startProbeHost(t, b, chainID) // B's host at the address A registered

	// A at an address it never registered, known to the prober from an
	// earlier connection (identify leaves a peer's listen addresses in the
	// peerstore): A registered only a dead address.
	elsewhere := startProbeHost(t, a, chainID)
	ka, err := crypto.UnmarshalEd25519PrivateKey(a)
	if err != nil {
		t.Fatal(err)
	}
	pidA, err := peer.IDFromPrivateKey(ka)
	if err != nil {
		t.Fatal(err)
	}
	learnElsewhere := func() {
		for _, m := range elsewhere.Addrs() {
			p.h.Peerstore().AddAddr(pidA, m, peerstore.RecentlyConnectedAddrTTL)
		}
	}

	for _, tc := range []struct {
		name  string
		addrs []string
		setup func()
	}{
		{"nothing listening", deadAddrs, nil},
		{"no probe protocol", HostAddrs(noProtocol), nil},
		{"never answers", HostAddrs(silent), nil},
		{"short answer", HostAddrs(short), nil},
		{"signed by another key", HostAddrs(otherKey), nil},
		{"signed for another chain", HostAddrs(otherChain), nil},
		{"signed another challenge", HostAddrs(otherChallenge), nil},
		{"signed without the domain", HostAddrs(noDomain), nil},
		{"another peer id", HostAddrs(impostor), nil},
		{"answers at an unregistered address", deadAddrs, learnElsewhere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			if err := probe(pubOf(a), tc.addrs); !errors.Is(err, ErrProbe) {
				t.Fatalf("probe = %v, want ErrProbe", err)
			}
			if err := probe(pubOf(honestKey), HostAddrs(honest)); err != nil {
				t.Fatalf("honest node refused after the attack: %v", err)
			}
		})
	}
	if err := probe(pubOf(a), HostAddrs(elsewhere)); err != nil {
		t.Fatalf("node A at its own registered address refused: %v", err)
	}
}
