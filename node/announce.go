package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/strata-mix/strata/pki"
)

// maxRegisteredAddrs and maxAddrLen are the limits of an intention's
// address list (docs/pki.md, "Transactions").
const (
	maxRegisteredAddrs = 8
	maxAddrLen         = 256
)

// errSetAnnounce ends every error that the announce setting fixes.
const errSetAnnounce = "set announce (--announce) to the public multiaddrs other nodes reach this one at"

// checkAnnounce validates an announce setting: at most 8 multiaddrs, each
// in canonical text form, at most 256 bytes, with no /p2p component (the
// identity key names the peer) and no unspecified IP (0.0.0.0, ::), as the
// chain will take them.
func checkAnnounce(list []string) error {
	if len(list) > maxRegisteredAddrs {
		return fmt.Errorf("node: announce: %d addresses, at most %d", len(list), maxRegisteredAddrs)
	}
	for _, s := range list {
		a, err := ma.NewMultiaddr(s)
		switch {
		case err != nil:
			return fmt.Errorf("node: announce: %q: %w", s, err)
		case a.String() != s:
			return fmt.Errorf("node: announce: %q is not canonical (write %q)", s, a.String())
		case len(s) > maxAddrLen:
			return fmt.Errorf("node: announce: %q is longer than %d bytes", s, maxAddrLen)
		case unspecified(a):
			return fmt.Errorf("node: announce: %q names no host (an unspecified address)", s)
		}
		if _, err := a.ValueForProtocol(ma.P_P2P); err == nil {
			return fmt.Errorf("node: announce: %q names a peer (/p2p): leave it out, the identity key does", s)
		}
	}
	return nil
}

// unspecified reports whether a has an unspecified /ip4 or /ip6
// component.
func unspecified(a ma.Multiaddr) bool {
	found := false
	ma.ForEach(a, func(c ma.Component) bool {
		if code := c.Protocol().Code; code == ma.P_IP4 || code == ma.P_IP6 {
			ip, ok := netip.AddrFromSlice(c.RawValue())
			found = ok && ip.Unmap().IsUnspecified()
		}
		return !found
	})
	return found
}

// registeredAddrs returns the addresses a node registers in its
// intention. With announce set, exactly those (checked by checkAnnounce).
// Otherwise the host's addresses — its listen addresses, an unspecified
// one expanded to the interfaces' addresses as libp2p does — minus any
// unspecified one. On a chain whose parameters say PublicAddrsOnly, only
// addresses passing pki.CheckPublicAddr: an announced one that fails is an
// error, a host address that fails is left out, and an error says to set
// announce when none is left.
func registeredAddrs(announce []string, host []ma.Multiaddr, publicOnly bool) ([]string, error) {
	if len(announce) > 0 {
		if err := checkAnnounce(announce); err != nil {
			return nil, err
		}
		if publicOnly {
			for _, s := range announce {
				if err := pki.CheckPublicAddr(ma.StringCast(s)); err != nil {
					return nil, fmt.Errorf("node: announce: %q: %w; the chain takes only public addresses", s, err)
				}
			}
		}
		return announce, nil
	}
	var out, refused []string
	for _, a := range host {
		if unspecified(a) {
			continue
		}
		if _, err := a.ValueForProtocol(ma.P_P2P); err == nil {
			continue
		}
		if publicOnly && pki.CheckPublicAddr(a) != nil {
			refused = append(refused, a.String())
			continue
		}
		out = append(out, a.String())
	}
	switch {
	case len(out) == 0 && publicOnly:
		return nil, fmt.Errorf("node: none of this node's addresses %v is public, and the chain takes only public addresses: %s", refused, errSetAnnounce)
	case len(out) == 0:
		return nil, fmt.Errorf("node: the host has no address to register: %s", errSetAnnounce)
	case len(out) > maxRegisteredAddrs:
		return nil, fmt.Errorf("node: the host has %d addresses %v, an intention takes at most %d: %s", len(out), out, maxRegisteredAddrs, errSetAnnounce)
	}
	return out, nil
}

// addrsToRegister reads the chain's parameters from the verified
// topology of the current epoch and returns what the node registers
// (registeredAddrs). It tries a few times, since a read across an epoch
// change can fail.
func (m *Membership) addrsToRegister(ctx context.Context) ([]string, error) {
	var err error
	for try := range 5 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(m.cfg.Interval):
			}
		}
		if err = m.cache.Refresh(ctx); err == nil {
			break
		}
	}
	top := m.cache.Current()
	if err == nil && top == nil {
		err = errors.New("no topology")
	}
	if err != nil {
		return nil, fmt.Errorf("node: reading the chain's parameters: %w", err)
	}
	return registeredAddrs(m.cfg.Announce, m.cfg.Host.LibP2P().Addrs(), top.Params.PublicAddrsOnly)
}

// WithAnnounce returns a copy of c registering announce instead of the
// file's setting (`strata relay --announce`), checked as the file is.
func (c *RelayConfig) WithAnnounce(announce []string) (*RelayConfig, error) {
	out := *c
	out.Announce = announce
	return &out, out.check()
}

// WithAnnounce is RelayConfig.WithAnnounce for a mailbox node
// (`strata mailbox --announce`).
func (c *MailboxConfig) WithAnnounce(announce []string) (*MailboxConfig, error) {
	out := *c
	out.Announce = announce
	return &out, out.check()
}
