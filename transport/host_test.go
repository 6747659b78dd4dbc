package transport

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPacketsArriveIntactAndInOrder(t *testing.T) {
	const n = 3000
	col := newCollector(n)
	b := startHost(t, Config{Handler: col.handle})
	a := startHost(t, Config{})
	if err := a.AddPeer(onlyAddrs(b.PeerInfo(), "/tcp/")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		for i := range uint64(n) {
			if err := a.Send(ctx, b.ID(), seqPacket(i, testPacketSize)); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	}()
	for i := range uint64(n) {
		r := col.next(t, 10*time.Second)
		if r.from != a.ID() {
			t.Fatalf("packet %d from %v, want %v", i, r.from, a.ID())
		}
		if want := seqPacket(i, testPacketSize); !bytes.Equal(r.pkt, want) {
			t.Fatalf("packet %d: got seq %d or corrupted bytes", i, r.pkt[:8])
		}
	}
	eventually(t, 5*time.Second, "counters", func() bool {
		return testutil.ToFloat64(b.m.framesIn) == n && testutil.ToFloat64(a.m.framesOut) == n
	})
	if got, want := testutil.ToFloat64(b.m.bytesIn), float64(n*(testPacketSize+2)); got != want {
		t.Errorf("bytes received = %v, want %v", got, want)
	}
}

func TestKeyExchangeAndSecurityOfEachTransport(t *testing.T) {
	withNoise := []Security{SecurityTLS, SecurityNoise}
	tests := []struct {
		name          string
		dialerSec     []Security
		listenerSec   []Security
		addrs         string
		wantTransport string
		wantSecurity  string
		wantKex       string
	}{
		{"TLS over TCP negotiates hybrid X25519MLKEM768", nil, nil, "/tcp/", "tcp", "tls", "X25519MLKEM768"},
		{"QUIC negotiates hybrid X25519MLKEM768", nil, nil, "/quic-v1", "quic-v1", "tls", "X25519MLKEM768"},
		{"two hosts that allow Noise still prefer TLS", withNoise, withNoise, "/tcp/", "tcp", "tls", "X25519MLKEM768"},
		{"a Noise-only dialer and a host that allows Noise use Noise XX over X25519", []Security{SecurityNoise}, withNoise, "/tcp/", "tcp", "noise", "X25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			col := newCollector(1)
			b := startHost(t, Config{Handler: col.handle, Security: tc.listenerSec})
			a := startHost(t, Config{Security: tc.dialerSec})
			if err := a.AddPeer(onlyAddrs(b.PeerInfo(), tc.addrs)); err != nil {
				t.Fatal(err)
			}
			pkt := seqPacket(7, testPacketSize)
			if err := a.TrySend(b.ID(), pkt); err != nil {
				t.Fatal(err)
			}
			if r := col.next(t, 10*time.Second); !bytes.Equal(r.pkt, pkt) {
				t.Fatal("packet corrupted")
			}
			for _, side := range []struct {
				name string
				h    *Host
				peer NodeID
			}{{"dialer", a, b.ID()}, {"listener", b, a.ID()}} {
				conns := side.h.Conns(side.peer)
				if len(conns) != 1 {
					t.Fatalf("%s has %d connections, want 1: %+v", side.name, len(conns), conns)
				}
				c := conns[0]
				t.Logf("%s sees %+v", side.name, c)
				if c.Transport != tc.wantTransport || c.Security != tc.wantSecurity || c.KeyExchange != tc.wantKex {
					t.Errorf("%s: transport %q security %q key exchange %q, want %q %q %q",
						side.name, c.Transport, c.Security, c.KeyExchange, tc.wantTransport, tc.wantSecurity, tc.wantKex)
				}
				if tc.wantSecurity == "tls" && c.TLSVersion != "TLS 1.3" {
					t.Errorf("%s: TLS version %q, want TLS 1.3", side.name, c.TLSVersion)
				}
				if got := testutil.ToFloat64(side.h.m.handshakes.WithLabelValues(tc.wantTransport, tc.wantSecurity, tc.wantKex)); got != 1 {
					t.Errorf("%s: handshakes metric = %v, want 1", side.name, got)
				}
			}
		})
	}
}

func TestPoolRedialsAfterRemoteRestarts(t *testing.T) {
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector(1 << 14)
	b := startHost(t, Config{Identity: key, Handler: col.handle})
	info := onlyAddrs(b.PeerInfo(), "/tcp/")
	a := startHost(t, Config{Logger: testLogger(t)})
	if err := a.AddPeer(info); err != nil {
		t.Fatal(err)
	}
	if err := a.TrySend(b.ID(), seqPacket(1, testPacketSize)); err != nil {
		t.Fatal(err)
	}
	col.next(t, 10*time.Second)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Traffic while the peer is down breaks the stream and fails dials.
	for i := range 20 {
		_ = a.TrySend(b.ID(), seqPacket(uint64(100+i), testPacketSize))
		time.Sleep(20 * time.Millisecond)
	}
	listen := make([]string, len(info.Addrs))
	for i, s := range info.Addrs {
		listen[i] = s[:bytes.LastIndex([]byte(s), []byte("/p2p/"))]
	}
	startHost(t, Config{Identity: key, ListenAddrs: listen, Handler: col.handle})
	for len(col.ch) > 0 {
		<-col.ch
	}
	deadline := time.Now().Add(15 * time.Second)
	for seq := uint64(1000); ; seq++ {
		if err := a.TrySend(b.ID(), seqPacket(seq, testPacketSize)); err != nil && !errors.Is(err, ErrQueueFull) && !errors.Is(err, ErrUnreachable) {
			t.Fatal(err)
		}
		select {
		case <-col.ch:
			if testutil.ToFloat64(a.m.redials) == 0 {
				t.Error("redials metric is 0 after a redial")
			}
			if testutil.ToFloat64(a.m.dials.WithLabelValues("ok")) < 2 {
				t.Error("dials{result=ok} < 2 after a redial")
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no packet reached the restarted peer")
		}
	}
}
