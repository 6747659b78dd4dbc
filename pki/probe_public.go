package pki

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	ma "github.com/multiformats/go-multiaddr"
)

// errInternal is why a public-only prober refuses an address.
var errInternal = errors.New("not a public address")

// publicDialAddrs returns what a public-only prober dials for m: m itself
// when it names a public IP; for a /dns, /dns4 or /dns6 name (its first
// component), m with the name replaced by each address it resolves to,
// all of which must be public. Anything else is refused.
func publicDialAddrs(ctx context.Context, m ma.Multiaddr) ([]ma.Multiaddr, error) {
	if len(m) == 0 {
		return nil, errors.New("empty address")
	}
	first, rest := m[0], m[1:]
	var network string
	switch first.Protocol().Code {
	case ma.P_IP4, ma.P_IP6:
		if err := CheckPublicAddr(m); err != nil {
			return nil, fmt.Errorf("%w: %w", errInternal, err)
		}
		return []ma.Multiaddr{m}, nil
	case ma.P_DNS:
		network = "ip"
	case ma.P_DNS4:
		network = "ip4"
	case ma.P_DNS6:
		network = "ip6"
	default:
		return nil, fmt.Errorf("%w: %s is not an IP or DNS name the prober can check", errInternal, first.Protocol().Name)
	}
	if err := CheckPublicAddr(m); err != nil {
		return nil, fmt.Errorf("%w: %w", errInternal, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, network, first.Value())
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", first.Value(), err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s resolves to nothing", first.Value())
	}
	// One registered name must not make every validator connect to a
	// crowd of third parties: at most as many addresses as an intention
	// may name.
	if len(ips) > maxAddrs {
		ips = ips[:maxAddrs]
	}
	var out []ma.Multiaddr
	for _, ip := range ips {
		ip = ip.Unmap().WithZone("")
		if !PublicIP(ip) {
			return nil, fmt.Errorf("%w: %s resolves to %s", errInternal, first.Value(), ip)
		}
		c, err := ipComponent(ip)
		if err != nil {
			return nil, err
		}
		out = append(out, append(ma.Multiaddr{c}, rest...))
	}
	return out, nil
}

func ipComponent(ip netip.Addr) (ma.Component, error) {
	name := "ip6"
	if ip.Is4() {
		name = "ip4"
	}
	c, err := ma.NewComponent(name, ip.String())
	if err != nil {
		return ma.Component{}, fmt.Errorf("address %s: %w", ip, err)
	}
	return *c, nil
}
