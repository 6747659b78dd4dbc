package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// ProbeProtocol is the libp2p protocol validators probe nodes with. The
// validator dials the node's registered addresses, expecting the peer id
// of its registered identity key (so the libp2p handshake already proves
// the key is there), opens a stream, and writes a 32-byte random
// challenge; the node answers with its Ed25519 signature of
// probeDomain ‖ len(chain id) ‖ chain id ‖ challenge, proving that the
// identity key is live behind a Strata node, not merely a libp2p host.
const ProbeProtocol = protocol.ID("/strata/pki/probe/1")

const (
	probeDomain       = "strata-pki-probe-v1\x00"
	probeChallengeLen = 32
)

func probeMessage(chainID string, challenge []byte) []byte {
	m := append([]byte(probeDomain), uint8(len(chainID)))
	m = append(m, chainID...)
	return append(m, challenge...)
}

// ServeProbe answers validators' probes on h, signing with the node's
// identity key, which must be h's identity.
func ServeProbe(h host.Host, identity ed25519.PrivateKey, chainID string) {
	h.SetStreamHandler(ProbeProtocol, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		challenge := make([]byte, probeChallengeLen)
		if _, err := io.ReadFull(s, challenge); err != nil {
			_ = s.Reset()
			return
		}
		_, _ = s.Write(ed25519.Sign(identity, probeMessage(chainID, challenge)))
	})
}

// libp2pOptions are the transports and security protocols of Strata's
// hosts (see docs/transport.md), so probes reach transport hosts: TLS 1.3
// only on TCP, as nodes offer by default (a node that also allows Noise
// still speaks TLS, and a probe that offered Noise could be downgraded).
func libp2pOptions(identity ed25519.PrivateKey) ([]libp2p.Option, error) {
	k, err := crypto.UnmarshalEd25519PrivateKey(identity)
	if err != nil {
		return nil, fmt.Errorf("pki: identity: %w", err)
	}
	return []libp2p.Option{
		libp2p.Identity(k),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.DisableRelay(),
		libp2p.Ping(false),
		libp2p.DisableMetrics(),
		libp2p.UserAgent("strata-pki"),
	}, nil
}

// StartProbeHost starts a libp2p host for identity listening on listen
// (default one TCP port on 127.0.0.1) that answers probes. A node whose
// transport host cannot mount ServeProbe runs this beside it and
// registers these addresses.
func StartProbeHost(identity ed25519.PrivateKey, chainID string, listen ...string) (host.Host, error) {
	opts, err := libp2pOptions(identity)
	if err != nil {
		return nil, err
	}
	if len(listen) == 0 {
		listen = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	h, err := libp2p.New(append(opts, libp2p.ListenAddrStrings(listen...))...)
	if err != nil {
		return nil, fmt.Errorf("pki: probe host: %w", err)
	}
	ServeProbe(h, identity, chainID)
	return h, nil
}

// HostAddrs returns h's listen addresses in the form an intention
// carries: canonical text, no /p2p component.
func HostAddrs(h host.Host) []string {
	var out []string
	for _, a := range h.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// ErrProbe is wrapped by every probe failure.
var ErrProbe = errors.New("pki: probe failed")

// Prober probes nodes from a libp2p host that only dials.
type Prober struct {
	h          host.Host
	chainID    string
	publicOnly bool
}

// ProberOption configures a Prober.
type ProberOption func(*Prober)

// ProbePublicOnly makes the prober dial public addresses only, as a chain
// with Params.PublicAddrsOnly needs: it refuses a probe whose addresses
// name an IP that fails PublicIP, or a /dnsaddr, and resolves /dns,
// /dns4 and /dns6 names itself (net.DefaultResolver, within the probe's
// context), refusing the probe if any address a name resolves to fails
// PublicIP and otherwise dialling the resolved IPs, so that libp2p does
// not resolve the name again to something else.
func ProbePublicOnly() ProberOption { return func(p *Prober) { p.publicOnly = true } }

// NewProber starts a dial-only libp2p host with a fresh key.
func NewProber(chainID string, options ...ProberOption) (*Prober, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	opts, err := libp2pOptions(key)
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(append(opts, libp2p.NoListenAddrs)...)
	if err != nil {
		return nil, fmt.Errorf("pki: prober host: %w", err)
	}
	p := &Prober{h: h, chainID: chainID}
	for _, o := range options {
		o(p)
	}
	return p, nil
}

// forget closes every connection to pid and drops its addresses.
func (p *Prober) forget(pid peer.ID) {
	_ = p.h.Network().ClosePeer(pid)
	p.h.Peerstore().ClearAddrs(pid)
	// libp2p backs off dialling a peer after a failure (5 s, then
	// 5 s + n² s); a probe is a fresh check and must dial again.
	if sw, ok := p.h.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(pid)
	}
}

// names reports whether m has one of the protocols.
func names(m ma.Multiaddr, codes ...int) bool {
	for _, c := range m.Protocols() {
		if slices.Contains(codes, c.Code) {
			return true
		}
	}
	return false
}

// Close stops the prober's host.
func (p *Prober) Close() error { return p.h.Close() }

// Probe checks that the node with identity key pub answers at addrs: it
// connects, dialling only addrs (never an address the prober learned
// otherwise), sends a challenge and verifies the signed answer. When every
// address names an IP (no /dns component), or the prober resolved the
// names itself (ProbePublicOnly), the connection's remote address must
// also be one of the addresses dialled.
func (p *Prober) Probe(ctx context.Context, pub [ed25519.PublicKeySize]byte, addrs []string) error {
	pk, err := crypto.UnmarshalEd25519PublicKey(pub[:])
	if err != nil {
		return fmt.Errorf("%w: key: %w", ErrProbe, err)
	}
	pid, err := peer.IDFromPublicKey(pk)
	if err != nil {
		return fmt.Errorf("%w: peer id: %w", ErrProbe, err)
	}
	info := peer.AddrInfo{ID: pid}
	resolved := true // every address names an IP, so the connection's remote address must be one of them
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return fmt.Errorf("%w: address %q: %w", ErrProbe, a, err)
		}
		if p.publicOnly {
			ips, err := publicDialAddrs(ctx, m)
			if err != nil {
				return fmt.Errorf("%w: address %q: %w", ErrProbe, a, err)
			}
			info.Addrs = append(info.Addrs, ips...)
			continue
		}
		info.Addrs = append(info.Addrs, m)
		resolved = resolved && !names(m, ma.P_DNS, ma.P_DNS4, ma.P_DNS6, ma.P_DNSADDR)
	}
	// Start clean: a connection or addresses left from an earlier probe
	// (identify records a peer's own listen addresses) would let the node
	// answer somewhere it did not register.
	p.forget(pid)
	defer p.forget(pid)
	if err := p.h.Connect(ctx, info); err != nil {
		return fmt.Errorf("%w: connect %s: %w", ErrProbe, pid, err)
	}
	s, err := p.h.NewStream(network.WithNoDial(ctx, "probe"), pid, ProbeProtocol)
	if err != nil {
		return fmt.Errorf("%w: open stream: %w", ErrProbe, err)
	}
	defer s.Close()
	if remote := s.Conn().RemoteMultiaddr(); resolved && !slices.ContainsFunc(info.Addrs, remote.Equal) {
		return fmt.Errorf("%w: %s answered at %s, which it did not register", ErrProbe, pid, remote)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	challenge := make([]byte, probeChallengeLen)
	if _, err := rand.Read(challenge); err != nil {
		return err
	}
	if _, err := s.Write(challenge); err != nil {
		return fmt.Errorf("%w: write challenge: %w", ErrProbe, err)
	}
	sig := make([]byte, ed25519.SignatureSize)
	if _, err := io.ReadFull(s, sig); err != nil {
		return fmt.Errorf("%w: read answer: %w", ErrProbe, err)
	}
	if !ed25519.Verify(pub[:], probeMessage(p.chainID, challenge), sig) {
		return fmt.Errorf("%w: bad signature from %s", ErrProbe, pid)
	}
	return nil
}
