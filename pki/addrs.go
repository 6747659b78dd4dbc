package pki

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	ma "github.com/multiformats/go-multiaddr"
)

// reservedV4 are the IPv4 blocks, beyond those netip classifies, that no
// public host is at: "this network" 0.0.0.0/8 (RFC 791), shared
// 100.64.0.0/10 (RFC 6598, carrier-grade NAT), IETF protocol assignments
// 192.0.0.0/24 (RFC 6890), benchmarking 198.18.0.0/15 (RFC 2544, also
// fake-IP proxies' range) and reserved 240.0.0.0/4 (RFC 1112, with the
// limited broadcast address).
var reservedV4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// globalUnicast is 2000::/3, the only IPv6 space allocated for global
// unicast (RFC 4291): outside it lie ::/8 (loopback, unspecified,
// IPv4-compatible and IPv4-translated addresses), NAT64 64:ff9b::/96 and
// 64:ff9b:1::/48, the discard prefix 100::/64, unique-local fc00::/7,
// link- and site-local fe80::/10 and fec0::/10, and multicast ff00::/8.
var globalUnicast = netip.MustParsePrefix("2000::/3")

// teredo (2001::/32, RFC 4380) is tunnelled through a server whose IPv4
// address the address embeds; sixToFour (2002::/16, RFC 3056) embeds the
// IPv4 address it is tunnelled to in bits 16-47.
var (
	teredo    = netip.MustParsePrefix("2001::/32")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// PublicIP reports whether ip may be named in a production chain's
// directory. An IPv4 address (an IPv4-mapped IPv6 address is judged as
// its IPv4 address) must not be loopback, private (RFC 1918), link-local,
// multicast, unspecified, or in reservedV4. An IPv6 address must be in
// 2000::/3, not Teredo (2001::/32), and if 6to4 (2002::/16) embed a
// public IPv4 address. An address with a zone is never public.
func PublicIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid(), ip.Zone() != "":
		return false
	case ip.Is4():
		return publicIPv4(ip)
	case !globalUnicast.Contains(ip), teredo.Contains(ip):
		return false
	case sixToFour.Contains(ip):
		b := ip.As16()
		return publicIPv4(netip.AddrFrom4([4]byte(b[2:6])))
	}
	return true
}

func publicIPv4(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
		return false
	}
	for _, p := range reservedV4 {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// localSuffixes are the names that can only mean this host or its site:
// localhost (RFC 6761), localdomain (hosts files), mDNS .local, and the
// private-use names of RFC 6762 appendix G and RFC 8375.
var localSuffixes = []string{"localhost", "localdomain", "local", "internal", "intranet", "private", "corp", "home", "lan", "home.arpa"}

// checkName reports why a /dns, /dns4 or /dns6 name cannot name a public
// host, or nil. The name, case-insensitive and with one final dot
// ignored, must be at most 253 bytes of at least two labels, each 1 to
// 63 ASCII letters, digits, '-' or '_' (an IDN in its xn-- form); its
// last label must begin with a letter (so that no resolver reads it as an
// IPv4 address, as inet_aton reads 127.1 or 0x7f.1); and it must not be
// or end in a localSuffixes name. A single label is refused because a
// resolver completes it with the host's search domains (GCE's "metadata"
// is 169.254.169.254).
func checkName(name string) error {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if _, err := netip.ParseAddr(n); err == nil {
		return fmt.Errorf("%s is an IP address, not a name", name)
	}
	if len(n) == 0 || len(n) > 253 {
		return fmt.Errorf("%q is not a host name (1 to 253 bytes)", name)
	}
	labels := strings.Split(n, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || strings.ContainsFunc(l, func(r rune) bool {
			return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_')
		}) {
			return fmt.Errorf("%q is not a host name (labels of 1 to 63 letters, digits, '-', '_')", name)
		}
	}
	if len(labels) < 2 {
		return fmt.Errorf("%s is a single label, which resolvers complete with local search domains", name)
	}
	if last := labels[len(labels)-1]; last[0] < 'a' || last[0] > 'z' {
		return fmt.Errorf("%s ends in a label that does not begin with a letter (a resolver may read it as an IPv4 address)", name)
	}
	for _, s := range localSuffixes {
		if n == s || strings.HasSuffix(n, "."+s) {
			return fmt.Errorf("%s names a local host", name)
		}
	}
	return nil
}

// CheckPublicAddr reports why a (parsed) multiaddr may not be named in a
// production chain's directory, or nil. It must begin with /ip4, /ip6,
// /dns, /dns4 or /dns6 (the hosts a public-only prober can check); every
// /ip4 and /ip6 component must be a PublicIP, every /dns, /dns4 and /dns6
// name must pass checkName, and there must be no /dnsaddr (its TXT
// records may name anything), /ip6zone, /ipcidr or /unix component. A DNS
// name that passes may still resolve to an internal address; a prober of
// such a chain checks what it resolves to before dialling.
func CheckPublicAddr(a ma.Multiaddr) error {
	if len(a) == 0 {
		return errors.New("empty address")
	}
	switch a[0].Protocol().Code {
	case ma.P_IP4, ma.P_IP6, ma.P_DNS, ma.P_DNS4, ma.P_DNS6:
	default:
		return fmt.Errorf("/%s is not a public host: an address begins with /ip4, /ip6, /dns, /dns4 or /dns6", a[0].Protocol().Name)
	}
	var bad error
	ma.ForEach(a, func(c ma.Component) bool {
		switch c.Protocol().Code {
		case ma.P_IP4, ma.P_IP6:
			ip, ok := netip.AddrFromSlice(c.RawValue())
			if !ok || !PublicIP(ip) {
				bad = fmt.Errorf("%s is not a public address", c.Value())
			}
		case ma.P_DNS, ma.P_DNS4, ma.P_DNS6:
			bad = checkName(c.Value())
		case ma.P_DNSADDR, ma.P_IP6ZONE, ma.P_IPCIDR, ma.P_UNIX:
			bad = fmt.Errorf("/%s is not allowed in a public address", c.Protocol().Name)
		}
		return bad == nil
	})
	return bad
}
