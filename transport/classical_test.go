package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// classicalTLS is libp2p TLS 1.3 (/tls/1.0.0, the same certificates and
// peer authentication) whose key exchange is classical X25519 only, as a
// peer built with GODEBUG=tlsmlkem=0, an older Go or another TLS stack
// would offer: a classical-only peer that speaks the protocol Strata's
// hosts offer.
type classicalTLS struct {
	id    *libp2ptls.Identity
	local peer.ID
}

var _ sec.SecureTransport = (*classicalTLS)(nil)

func newClassicalTLS(_ protocol.ID, key crypto.PrivKey) (*classicalTLS, error) {
	id, err := libp2ptls.NewIdentity(key)
	if err != nil {
		return nil, err
	}
	local, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &classicalTLS{id: id, local: local}, nil
}

func (t *classicalTLS) ID() protocol.ID { return libp2ptls.ID }

func (t *classicalTLS) SecureInbound(ctx context.Context, c net.Conn, p peer.ID) (sec.SecureConn, error) {
	cfg, keys := t.id.ConfigForPeer(p)
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	return t.handshake(ctx, tls.Server(c, cfg), keys)
}

func (t *classicalTLS) SecureOutbound(ctx context.Context, c net.Conn, p peer.ID) (sec.SecureConn, error) {
	cfg, keys := t.id.ConfigForPeer(p)
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	return t.handshake(ctx, tls.Client(c, cfg), keys)
}

func (t *classicalTLS) handshake(ctx context.Context, c *tls.Conn, keys <-chan crypto.PubKey) (sec.SecureConn, error) {
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	key := <-keys
	remote, err := peer.IDFromPublicKey(key)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &classicalConn{Conn: c, local: t.local, remote: remote, key: key}, nil
}

type classicalConn struct {
	*tls.Conn
	local, remote peer.ID
	key           crypto.PubKey
}

func (c *classicalConn) LocalPeer() peer.ID                 { return c.local }
func (c *classicalConn) RemotePeer() peer.ID                { return c.remote }
func (c *classicalConn) RemotePublicKey() crypto.PubKey     { return c.key }
func (c *classicalConn) ConnState() network.ConnectionState { return network.ConnectionState{} }

// startClassicalPeer starts a libp2p host on TCP loopback that offers
// only classicalTLS, with the node identity of a transport host.
func startClassicalPeer(t *testing.T) (host.Host, PeerInfo) {
	t.Helper()
	idk, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	key, err := crypto.UnmarshalEd25519PrivateKey(idk)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(libp2ptls.ID, newClassicalTLS), libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.Ping(false), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	info := PeerInfo{PublicKey: idk.Public().(ed25519.PublicKey)}
	for _, a := range h.Addrs() {
		info.Addrs = append(info.Addrs, a.String())
	}
	return h, info
}

// sendRaw opens a mix stream from h to to and writes one packet on it.
func sendRaw(ctx context.Context, h host.Host, to *Host, pkt []byte) error {
	lh := to.LibP2P()
	if err := h.Connect(ctx, peer.AddrInfo{ID: lh.ID(), Addrs: lh.Addrs()}); err != nil {
		return err
	}
	s, err := h.NewStream(ctx, lh.ID(), ProtocolID)
	if err != nil {
		return err
	}
	defer s.Close()
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(pkt)))
	_, err = s.Write(append(frame, pkt...))
	return err
}

// A peer whose TLS 1.3 offers only classical X25519 (no X25519MLKEM768)
// cannot link with a host of default security, in either direction, and
// no packet passes; honest peers are served meanwhile. A host that allows
// classical links (NodeSecurity(true)) takes it, with X25519: the peer
// under test really is classical.
func TestClassicalTLSPeerIsRefused(t *testing.T) {
	pkt := seqPacket(7, testPacketSize)
	t.Run("a classical dialer", func(t *testing.T) {
		col := newCollector(4)
		victim := startHost(t, Config{Handler: col.handle})
		attacker, _ := startClassicalPeer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sendRaw(ctx, attacker, victim, pkt); err == nil {
			// TLS 1.3 lets a client write before the server has judged it;
			// what counts is that nothing arrives and no link stays.
			t.Log("the classical dialer's stream write did not fail at once")
		}
		time.Sleep(300 * time.Millisecond)
		select {
		case r := <-col.ch:
			t.Fatalf("a packet from the classical peer %v passed", r.from)
		default:
		}
		if n := len(victim.LibP2P().Network().ConnsToPeer(attacker.ID())); n != 0 {
			t.Fatalf("the victim holds %d connections to the classical peer", n)
		}
		if got := testutil.ToFloat64(victim.m.disconnects.WithLabelValues(reasonClassical)); got < 1 {
			t.Fatalf("classical refusals counted %v", got)
		}
		assertStillServes(t, victim, col)
	})
	t.Run("a classical listener", func(t *testing.T) {
		victim := startHost(t, Config{})
		_, info := startClassicalPeer(t)
		if err := victim.AddPeer(info); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := victim.Connect(ctx, NodeIDFromPublicKey(info.PublicKey)); err == nil {
			t.Fatalf("a default host linked with a classical listener: %+v", victim.Conns(NodeIDFromPublicKey(info.PublicKey)))
		}
	})
	t.Run("a host that allows classical links takes it", func(t *testing.T) {
		col := newCollector(4)
		lax := startHost(t, Config{Handler: col.handle, Security: NodeSecurity(true)})
		attacker, _ := startClassicalPeer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sendRaw(ctx, attacker, lax, pkt); err != nil {
			t.Fatal(err)
		}
		r := col.next(t, 10*time.Second)
		for _, c := range lax.Conns(r.from) {
			if c.KeyExchange != "X25519" {
				t.Fatalf("the classical peer's link: %+v", c)
			}
		}
	})
}
