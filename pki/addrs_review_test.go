package pki

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// TestCheckPublicAddrRefusesDisguisedInternalAddresses plays a node that
// wants a production chain's directory (and so its validators' probers,
// its clients and its relays) to point at an internal host: loopback,
// private or metadata (169.254.169.254) addresses dressed up as IPv6
// forms that embed or tunnel to an IPv4 address (IPv4-compatible ::/96,
// IPv4-translated ::ffff:0:0/96, NAT64 64:ff9b::/96 and 64:ff9b:1::/48,
// 6to4 2002::/16, Teredo 2001::/32), IPv6 space that is not global unicast
// (site-local, discard), reserved IPv4 space, DNS names that are IP
// literals, numeric or single-label (completed by the resolver's search
// domains: GCE's "metadata" is 169.254.169.254), malformed names, and
// multiaddrs that name no IP or DNS host at all (/unix, a bare /tcp,
// /ip6zone, /ipcidr, /dnsaddr, whose TXT records may name anything and
// which the public-only prober refuses anyway). Each is refused; the
// honest public forms alongside still pass.
func TestCheckPublicAddrRefusesDisguisedInternalAddresses(t *testing.T) {
	refused := []string{
		"/ip6/::a00:1/tcp/4001",                                      // IPv4-compatible 10.0.0.1
		"/ip6/::7f00:1/tcp/4001",                                     // IPv4-compatible 127.0.0.1
		"/ip6/::a9fe:a9fe/tcp/80",                                    // IPv4-compatible 169.254.169.254
		"/ip6/::ffff:0:a00:1/tcp/4001",                               // IPv4-translated 10.0.0.1
		"/ip6/64:ff9b::a9fe:a9fe/tcp/80",                             // NAT64 of the metadata address
		"/ip6/64:ff9b::a00:1/tcp/4001",                               // NAT64 of 10.0.0.1
		"/ip6/64:ff9b::7f00:1/tcp/4001",                              // NAT64 of 127.0.0.1
		"/ip6/64:ff9b:1::a00:1/tcp/4001",                             // local-use NAT64 prefix
		"/ip6/2002:a00:1::1/tcp/4001",                                // 6to4 of 10.0.0.1
		"/ip6/2002:7f00:1::1/tcp/4001",                               // 6to4 of 127.0.0.1
		"/ip6/2002:a9fe:a9fe::1/tcp/80",                              // 6to4 of 169.254.169.254
		"/ip6/2001:0:a00:1::1/tcp/4001",                              // Teredo
		"/ip6/fec0::1/tcp/4001",                                      // site-local
		"/ip6/100::1/tcp/4001",                                       // discard prefix
		"/ip6/::2/tcp/4001",                                          // reserved ::/8
		"/ip4/240.0.0.1/tcp/4001",                                    // reserved 240/4
		"/ip4/255.255.255.255/udp/4001",                              // limited broadcast
		"/ip4/192.0.0.170/tcp/4001",                                  // IETF protocol assignments
		"/ip4/198.18.0.1/tcp/4001",                                   // benchmarking (fake-IP proxies)
		"/dns4/127.0.0.1/tcp/4001",                                   // an IP literal as a name
		"/dns/10.0.0.1/tcp/4001",                                     // an IP literal as a name
		"/dns6/::1/tcp/4001",                                         // an IP literal as a name
		"/dns4/2130706433/tcp/4001",                                  // 127.0.0.1 to inet_aton
		"/dns4/127.1/tcp/4001",                                       // 127.0.0.1 to inet_aton
		"/dns4/0x7f.1/tcp/4001",                                      // 127.0.0.1 to inet_aton
		"/dns4/metadata/tcp/80",                                      // single label: search domains
		"/dns4/ip6-localhost/tcp/4001",                               // single label (Debian hosts)
		"/dns4/localhost.localdomain/tcp/4001",                       // hosts file loopback
		"/dns4/localhost../tcp/4001",                                 // empty label dodging the suffix test
		"/dns4/localhost.%2e/tcp/4001",                               // not a host name
		"/dns4/relay.example.org:80/tcp/4001",                        // not a host name
		"/dns4/" + strings.Repeat("a", 64) + ".example.org/tcp/4001", // label > 63
		"/dns4/" + strings.Repeat("a.", 126) + "org/tcp/4001",        // name > 253
		"/dnsaddr/relay.example.org",                                 // anything behind TXT
		"/dnsaddr/relay.example.org/tcp/4001",
		"/unix/var/run/docker.sock",
		"/tcp/4001",
		"/ip6zone/eth0/ip6/2001:db8::1/tcp/4001",
		"/ip4/203.0.113.7/ipcidr/8/tcp/4001",
		"/ip4/203.0.113.7/tcp/4001/unix/tmp/x",
	}
	for _, s := range refused {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Logf("%s does not even parse (%v): nothing to check", s, err)
			continue
		}
		if err := CheckPublicAddr(m); err == nil {
			t.Errorf("CheckPublicAddr(%s) accepted an address that does not name a public host", s)
		}
	}
	for _, s := range []string{
		"/ip4/203.0.113.7/tcp/4001",
		"/ip4/8.8.8.8/udp/443/quic-v1",
		"/ip6/2001:db8::1/udp/4001/quic-v1",
		"/ip6/2606:4700::1111/tcp/443",
		"/ip6/2002:808:808::1/tcp/4001", // 6to4 of a public address
		"/ip6/::ffff:8.8.8.8/tcp/4001",  // mapped public IPv4
		"/dns4/relay.example.org/tcp/4001",
		"/dns/relay.example.org./tcp/4001",
		"/dns6/relay-1.Example.ORG/udp/4001/quic-v1",
		"/dns4/xn--bcher-kva.example/tcp/4001",
		"/dns4/_relay.example.org/tcp/4001",
	} {
		if err := CheckPublicAddr(ma.StringCast(s)); err != nil {
			t.Errorf("CheckPublicAddr(%s) refused an honest public address: %v", s, err)
		}
	}
	// PublicIP is what the public-only prober applies to resolved names.
	for _, s := range []string{"::a00:1", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "fec0::1", "240.0.0.1"} {
		if PublicIP(netip.MustParseAddr(s)) {
			t.Errorf("PublicIP(%s) = true", s)
		}
	}
	if PublicIP(netip.MustParseAddr("2001:db8::1%eth0")) {
		t.Error("PublicIP accepted an address with a zone (link scope)")
	}
}

// TestPublicChainRefusesDisguisedIntentions: a chain with PublicAddrsOnly
// refuses (CodeBadAddress) intentions whose addresses reach an internal
// host in disguise — NAT64, 6to4 and IPv4-compatible forms of private,
// loopback and metadata addresses, IP literals and single labels as DNS
// names, /dnsaddr, /unix — one among good addresses included, counts none
// of them, and admits the honest intentions alongside.
func TestPublicChainRefusesDisguisedIntentions(t *testing.T) {
	p := testParams()
	p.PublicAddrsOnly = true
	c := newChain(t, p, 1)
	c.mustBlock()
	i := 0
	intention := func(addrs ...string) []byte {
		i++
		tx, err := NewIntention(context.Background(), testChainID, 0, detKey("disguised", i), RoleRelay, addrs, c.m.params.PowBitsFor(c.m.st.accepted(0)))
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	for _, a := range [][]string{
		{"/ip6/64:ff9b::a9fe:a9fe/tcp/80"},
		{"/ip6/2002:a00:1::1/tcp/4001"},
		{"/ip6/::7f00:1/tcp/4001"},
		{"/dns4/127.0.0.1/tcp/4001"},
		{"/dns4/metadata/tcp/80"},
		{"/dnsaddr/relay.example.org"},
		{"/unix/var/run/docker.sock"},
		{"/ip4/203.0.113.7/tcp/4001", "/ip6/2002:a9fe:a9fe::1/tcp/80"},
	} {
		if errs := c.block(intention(a...)); CodeOf(errs[0]) != CodeBadAddress {
			t.Errorf("%v: %v, want bad address", a, errs[0])
		}
	}
	if got := c.m.st.accepted(0); got != 0 {
		t.Fatalf("refused intentions counted: %d", got)
	}
	for _, a := range []string{"/ip4/203.0.113.7/tcp/4001", "/ip6/2606:4700::1111/udp/4001/quic-v1", "/dns4/relay.example.org./tcp/4001"} {
		c.mustBlock(intention(a))
	}
}
