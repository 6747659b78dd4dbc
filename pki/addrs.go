package pki

import (
	"fmt"
	"net/netip"
	"strings"

	ma "github.com/multiformats/go-multiaddr"
)

// sharedSpace is 100.64.0.0/10 (RFC 6598, carrier-grade NAT), which
// netip does not count as private but is no more reachable from outside.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// thisNetwork is 0.0.0.0/8 (RFC 791 "this network").
var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// PublicIP reports whether ip may be named in a production chain's
// directory: not loopback, private (RFC 1918, RFC 4193), shared
// (RFC 6598), link-local, unspecified, "this network" or multicast. An
// IPv4-mapped IPv6 address is judged as its IPv4 address.
func PublicIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid(), ip.IsLoopback(), ip.IsPrivate(), ip.IsUnspecified(),
		ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast(), ip.IsMulticast():
		return false
	case ip.Is4() && (sharedSpace.Contains(ip) || thisNetwork.Contains(ip)):
		return false
	}
	return true
}

// localName reports whether a DNS name can only mean this host or its
// local network (RFC 6761 localhost, mDNS .local, and .internal / .lan
// / .home.arpa, which resolve only inside a site).
func localName(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, s := range []string{"localhost", "local", "internal", "lan", "home.arpa"} {
		if name == s || strings.HasSuffix(name, "."+s) {
			return true
		}
	}
	return false
}

// CheckPublicAddr reports why a (parsed) multiaddr may not be named in a
// production chain's directory, or nil: every /ip4 and /ip6 component
// must be a PublicIP and no /dns, /dns4, /dns6 or /dnsaddr name may be a
// local one. A DNS name that passes may still resolve to an internal
// address; a prober of such a chain checks what it resolves to before
// dialling.
func CheckPublicAddr(a ma.Multiaddr) error {
	var bad error
	ma.ForEach(a, func(c ma.Component) bool {
		switch c.Protocol().Code {
		case ma.P_IP4, ma.P_IP6:
			ip, ok := netip.AddrFromSlice(c.RawValue())
			if !ok || !PublicIP(ip) {
				bad = fmt.Errorf("%s is not a public address", c.Value())
			}
		case ma.P_DNS, ma.P_DNS4, ma.P_DNS6, ma.P_DNSADDR:
			if localName(c.Value()) {
				bad = fmt.Errorf("%s names a local host", c.Value())
			}
		}
		return bad == nil
	})
	return bad
}
