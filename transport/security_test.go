package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A peer that offers only classical Noise cannot connect to a host with the
// default security, in either direction, and no packet passes; honest
// (TLS) peers are served meanwhile.
func TestNoiseOnlyPeerIsRefused(t *testing.T) {
	noiseOnly := []Security{SecurityNoise}
	t.Run("a Noise-only dialer", func(t *testing.T) {
		col := newCollector(4)
		victim := startHost(t, Config{Handler: col.handle})
		attacker := startHost(t, Config{Security: noiseOnly})
		if err := attacker.AddPeer(onlyAddrs(victim.PeerInfo(), "/tcp/")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := attacker.Connect(ctx, victim.ID()); err == nil {
			t.Fatal("a Noise-only dialer connected to a default host")
		}
		for i := range 5 {
			_ = attacker.TrySend(victim.ID(), seqPacket(uint64(i), testPacketSize))
		}
		assertNoLink(t, victim, attacker, col)
		assertStillServes(t, victim, col)
	})
	t.Run("a Noise-only listener", func(t *testing.T) {
		col := newCollector(4)
		attacker := startHost(t, Config{Security: noiseOnly, Handler: col.handle})
		victim := startHost(t, Config{})
		if err := victim.AddPeer(onlyAddrs(attacker.PeerInfo(), "/tcp/")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := victim.Connect(ctx, attacker.ID()); err == nil {
			t.Fatal("a default host connected to a Noise-only listener")
		}
		for i := range 5 {
			_ = victim.TrySend(attacker.ID(), seqPacket(uint64(i), testPacketSize))
		}
		eventually(t, 10*time.Second, "the pool's dial to fail", func() bool {
			return testutil.ToFloat64(victim.m.dials.WithLabelValues("error")) >= 1
		})
		assertNoLink(t, attacker, victim, col)
	})
}

// assertNoLink checks that a and b hold no connection and that col, a's
// handler, got nothing.
func assertNoLink(t *testing.T, a, b *Host, col *collector) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if a.IsConnected(b.ID()) || b.IsConnected(a.ID()) {
		t.Fatalf("connected: %+v", a.Conns(b.ID()))
	}
	select {
	case r := <-col.ch:
		t.Fatalf("a packet from %v passed", r.from)
	default:
	}
	for _, h := range []*Host{a, b} {
		if got := testutil.ToFloat64(h.m.handshakes.WithLabelValues("tcp", "noise", "X25519")); got != 0 {
			t.Fatalf("%v completed %v Noise handshakes", h.ID(), got)
		}
	}
}

// An on-path attacker who rewrites multistream-select, answering "na" to
// /tls/1.0.0 as libp2p's unauthenticated negotiation lets it, cannot move
// two default hosts to Noise: there is nothing to fall back to, so the link
// fails instead. The same attack on two hosts that both allow Noise does
// downgrade them, which is why Noise is off by default.
func TestOnPathDowngradeFails(t *testing.T) {
	withNoise := []Security{SecurityTLS, SecurityNoise}
	tests := []struct {
		name    string
		sec     []Security
		wantSec string // "" = no link
	}{
		{"default hosts refuse to be downgraded", nil, ""},
		{"hosts that allow Noise are downgraded (the cost of allow_classical_noise)", withNoise, "noise"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			col := newCollector(4)
			listener := startHost(t, Config{Security: tc.sec, Handler: col.handle})
			dialer := startHost(t, Config{Security: tc.sec})
			mitm := startDowngrader(t, onlyAddrs(listener.PeerInfo(), "/tcp/").Addrs[0])
			info := listener.PeerInfo()
			info.Addrs = []string{mitm.addr}
			if err := dialer.AddPeer(info); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := dialer.Connect(ctx, listener.ID())
			if tc.wantSec == "" {
				if err == nil {
					t.Fatalf("connected through the downgrader: %+v", dialer.Conns(listener.ID()))
				}
				_ = dialer.TrySend(listener.ID(), seqPacket(1, testPacketSize))
				assertNoLink(t, listener, dialer, col)
				if !mitm.answeredNA() {
					t.Fatal("the downgrader never saw a /tls/1.0.0 proposal to refuse")
				}
				return
			}
			if err != nil {
				t.Fatalf("connect through the downgrader: %v", err)
			}
			if c := dialer.Conns(listener.ID()); len(c) != 1 || c[0].Security != tc.wantSec || c[0].KeyExchange != "X25519" {
				t.Fatalf("connection %+v, want a %s one", c, tc.wantSec)
			}
		})
	}
}

// downgrader is a TCP proxy that plays the on-path attacker against
// multistream-select's choice of security protocol.
type downgrader struct {
	addr string
	mu   sync.Mutex
	na   bool
}

func (d *downgrader) answeredNA() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.na
}

// startDowngrader proxies to target (a /ip4/.../tcp/... multiaddr). Towards
// the dialer it answers "na" to /tls/1.0.0; the dialer's next proposal is
// passed to the listener, and from then on bytes are relayed unchanged.
func startDowngrader(t *testing.T, target string) *downgrader {
	t.Helper()
	parts := strings.Split(target, "/") // "", ip4, ip, tcp, port, ...
	dst := net.JoinHostPort(parts[2], parts[4])
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	d := &downgrader{addr: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go d.serve(c, dst)
		}
	}()
	return d
}

func (d *downgrader) serve(dialer net.Conn, dst string) {
	defer dialer.Close()
	_ = dialer.SetDeadline(time.Now().Add(10 * time.Second))
	dr := bufio.NewReader(dialer)
	const header = "/multistream/1.0.0\n"
	if m, err := readMSS(dr); err != nil || m != header {
		return
	}
	first, err := readMSS(dr)
	if err != nil {
		return
	}
	if first == "/tls/1.0.0\n" {
		d.mu.Lock()
		d.na = true
		d.mu.Unlock()
	}
	if _, err := dialer.Write(append(mss(header), mss("na\n")...)); err != nil {
		return
	}
	next, err := readMSS(dr) // the dialer's fallback, if it has one
	if err != nil {
		return
	}
	listener, err := net.DialTimeout("tcp", dst, 5*time.Second)
	if err != nil {
		return
	}
	defer listener.Close()
	_ = listener.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := listener.Write(append(mss(header), mss(next)...)); err != nil {
		return
	}
	lr := bufio.NewReader(listener)
	if m, err := readMSS(lr); err != nil || m != header {
		return
	}
	// From the listener's answer on, the two talk through us unchanged.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(listener, dr); listener.Close() }()
	go func() { defer wg.Done(); _, _ = io.Copy(dialer, lr); dialer.Close() }()
	wg.Wait()
}

// mss encodes one multistream-select message: uvarint length || text.
func mss(s string) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(s))), s...)
}

func readMSS(r *bufio.Reader) (string, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return "", err
	}
	if n > 1024 {
		return "", errors.New("multistream message too long")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// Both ends of a default host's connections, over TCP and over QUIC, report
// TLS 1.3 with X25519MLKEM768 (see also TestKeyExchangeAndSecurityOfEachTransport).
func TestDefaultLinksArePostQuantum(t *testing.T) {
	for _, tr := range []string{"/tcp/", "/quic-v1"} {
		t.Run(tr, func(t *testing.T) {
			col := newCollector(1)
			b := startHost(t, Config{Handler: col.handle})
			a := startHost(t, Config{})
			if err := a.AddPeer(onlyAddrs(b.PeerInfo(), tr)); err != nil {
				t.Fatal(err)
			}
			pkt := seqPacket(3, testPacketSize)
			if err := a.TrySend(b.ID(), pkt); err != nil {
				t.Fatal(err)
			}
			if r := col.next(t, 10*time.Second); !bytes.Equal(r.pkt, pkt) {
				t.Fatal("packet corrupted")
			}
			for _, c := range append(a.Conns(b.ID()), b.Conns(a.ID())...) {
				if c.Security != "tls" || c.TLSVersion != "TLS 1.3" || c.KeyExchange != "X25519MLKEM768" {
					t.Errorf("connection %+v is not TLS 1.3 with X25519MLKEM768", c)
				}
			}
		})
	}
}
