package pki

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// countingListener accepts TCP connections on 127.0.0.1 and counts them.
func countingListener(t *testing.T) (port int, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, accepted
}

// TestPublicOnlyProberNeverDialsInternalAddresses: a prober made with
// ProbePublicOnly refuses, without opening a connection, a node
// registered at a loopback IP or at a DNS name that resolves (through
// the system resolver, /etc/hosts here) to loopback, and a /dnsaddr; the
// same node is accepted by a prober without the option, which is what
// testnets run.
func TestPublicOnlyProberNeverDialsInternalAddresses(t *testing.T) {
	key := detKey("public-probe", 0)
	h := startProbeHost(t, key, testChainID)
	port := 0
	for _, a := range h.Addrs() {
		if v, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			fmt.Sscan(v, &port)
		}
	}
	trap, dialled := countingListener(t)
	probe := func(p *Prober, addrs ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return p.Probe(ctx, pubOf(key), addrs)
	}
	open := func(opts ...ProberOption) *Prober {
		p, err := NewProber(testChainID, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	plain, public := open(), open(ProbePublicOnly())

	byName := fmt.Sprintf("/dns4/localhost/tcp/%d", port)
	byIP := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	for _, a := range []string{byName, byIP} {
		if err := probe(plain, a); err != nil {
			t.Fatalf("prober without the option refused the honest node at %s: %v", a, err)
		}
	}
	for _, addrs := range [][]string{
		{byName},
		{byIP},
		{fmt.Sprintf("/dns/localhost/tcp/%d", trap)},
		{fmt.Sprintf("/dns4/localhost/tcp/%d", trap)},
		{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", trap)},
		{fmt.Sprintf("/ip6/::ffff:127.0.0.1/tcp/%d", trap)},
		{"/dnsaddr/localhost"},
		{fmt.Sprintf("/ip4/203.0.113.9/tcp/%d", trap), fmt.Sprintf("/dns4/localhost/tcp/%d", trap)},
	} {
		err := probe(public, addrs...)
		if !errors.Is(err, ErrProbe) || !strings.Contains(err.Error(), "not a public address") {
			t.Errorf("public-only probe of %v = %v, want ErrProbe for an internal address", addrs, err)
		}
	}
	if n := dialled.Load(); n != 0 {
		t.Fatalf("the public-only prober opened %d connections to an internal address", n)
	}
	// The trap does count what the plain prober dials.
	_ = probe(plain, fmt.Sprintf("/dns4/localhost/tcp/%d", trap))
	if dialled.Load() == 0 {
		t.Fatal("the plain prober's dial of the trap was not counted")
	}
}

// TestPublicDialAddrs: a public IP address is dialled as it is; a name
// is replaced by what it resolves to, and refused if that is internal.
func TestPublicDialAddrs(t *testing.T) {
	ctx := context.Background()
	m := ma.StringCast("/ip4/203.0.113.9/udp/4001/quic-v1")
	got, err := publicDialAddrs(ctx, m)
	if err != nil || len(got) != 1 || !got[0].Equal(m) {
		t.Fatalf("public IP: %v, %v", got, err)
	}
	if _, err := publicDialAddrs(ctx, ma.StringCast("/dns4/localhost/tcp/1")); !errors.Is(err, errInternal) {
		t.Fatalf("localhost: %v", err)
	}
	if _, err := publicDialAddrs(ctx, ma.StringCast("/dns4/no-such-host.invalid/tcp/1")); err == nil {
		t.Fatal("an unresolvable name passed")
	}
}
