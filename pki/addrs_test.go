package pki

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

func TestCheckPublicAddr(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"/ip4/203.0.113.7/tcp/4001", true},
		{"/ip6/2001:db8::1/udp/4001/quic-v1", true},
		{"/dns4/relay.example.org/tcp/4001", true},
		{"/ip4/127.0.0.1/tcp/4001", false},
		{"/ip4/10.1.2.3/tcp/4001", false},
		{"/ip4/172.16.0.1/tcp/4001", false},
		{"/ip4/192.168.1.1/tcp/4001", false},
		{"/ip4/100.64.0.1/tcp/4001", false},
		{"/ip4/169.254.169.254/tcp/80", false},
		{"/ip4/0.0.0.0/tcp/4001", false},
		{"/ip4/0.1.2.3/tcp/4001", false},
		{"/ip4/224.0.0.1/tcp/4001", false},
		{"/ip6/::1/tcp/4001", false},
		{"/ip6/::/tcp/4001", false},
		{"/ip6/fd00::1/tcp/4001", false},
		{"/ip6/fe80::1/tcp/4001", false},
		{"/ip6/ff02::1/tcp/4001", false},
		{"/ip6/::ffff:127.0.0.1/tcp/4001", false},
		{"/ip6/::ffff:10.0.0.1/tcp/4001", false},
		{"/dns4/localhost/tcp/4001", false},
		{"/dns/LOCALHOST./tcp/4001", false},
		{"/dns6/printer.local/tcp/4001", false},
		{"/dnsaddr/db.internal", false},
		{"/dns/nas.home.arpa/tcp/22", false},
	} {
		m, err := ma.NewMultiaddr(c.addr)
		if err != nil {
			t.Fatalf("%s: %v", c.addr, err)
		}
		if err := CheckPublicAddr(m); (err == nil) != c.ok {
			t.Errorf("CheckPublicAddr(%s) = %v, want ok %v", c.addr, err, c.ok)
		}
	}
}

func TestParamsRoundTripNewFields(t *testing.T) {
	for _, p := range []Params{DefaultParams(), testParams()} {
		e := enc{}
		p.encode(&e)
		d := dec{b: e.b}
		got := decodeParams(&d)
		if err := d.end(); err != nil || got != p {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, p)
		}
	}
	p := DefaultParams()
	e := enc{}
	p.encode(&e)
	e.b[len(e.b)-1] = 2 // public addrs only must be 0 or 1
	d := dec{b: e.b}
	decodeParams(&d)
	if d.err == nil {
		t.Fatal("a public-addrs-only byte of 2 decoded")
	}
}
