package node

import (
	"strings"
	"testing"
)

// TestPublicChainAnnounceRefusesWhatNoProberAccepts: on a chain that
// takes only public addresses, an announce setting naming an address the
// validators' public-only probers refuse outright (a /dnsaddr, a /unix
// path, a single-label name, an IP literal written as a name, NAT64 or
// 6to4 forms of private and metadata addresses) is an error at start. It
// used to be registered, every probe of the node refused, and the node
// never admitted, with nothing said. Host addresses of those kinds are
// left out, the public ones kept.
func TestPublicChainAnnounceRefusesWhatNoProberAccepts(t *testing.T) {
	for _, a := range []string{
		"/dnsaddr/relay.example.org",
		"/unix/run/strata.sock",
		"/dns4/metadata/tcp/80",
		"/dns4/10.0.0.1/tcp/4001",
		"/ip6/64:ff9b::a9fe:a9fe/tcp/80",
		"/ip6/2002:a00:1::1/tcp/4001",
		"/ip6/::7f00:1/tcp/4001",
	} {
		got, err := registeredAddrs([]string{"/ip4/198.51.100.4/tcp/4001", a}, nil, true)
		if err == nil || !strings.Contains(err.Error(), "public") {
			t.Errorf("announce %s on a public chain: %v, %v; want an error naming the public-address rule", a, got, err)
		}
		if got, err := registeredAddrs([]string{a}, nil, false); err != nil {
			t.Errorf("announce %s on a testnet: %v, %v; testnets take any canonical address", a, got, err)
		}
	}
	host := multiaddrs(t, "/ip6/64:ff9b::a00:1/tcp/4001", "/ip6/2002:a9fe:a9fe::1/tcp/4001", "/ip6/fec0::1/tcp/4001",
		"/ip4/198.18.0.7/tcp/4001", "/ip4/203.0.113.9/tcp/4001", "/ip6/2606:4700::1111/tcp/4001")
	got, err := registeredAddrs(nil, host, true)
	if err != nil || strings.Join(got, " ") != "/ip4/203.0.113.9/tcp/4001 /ip6/2606:4700::1111/tcp/4001" {
		t.Errorf("host addresses on a public chain: %v, %v; want only the two public ones", got, err)
	}
}
