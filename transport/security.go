package transport

import (
	"crypto/tls"
	"net"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/quic-go/quic-go"
)

// pqKeyExchange is the key exchange every link must use unless the host
// allows classical links: the hybrid X25519 + ML-KEM-768 group, as
// crypto/tls names it.
const pqKeyExchange = "X25519MLKEM768"

// ConnInfo describes one open connection and how it was secured.
type ConnInfo struct {
	// Transport is "tcp" or "quic-v1".
	Transport string
	// Security is "tls" (TLS 1.3, also inside QUIC) or "noise".
	Security string
	// KeyExchange is the key exchange group the handshake used, as Go's
	// crypto/tls names it ("X25519MLKEM768", "X25519", ...). Noise always
	// uses "X25519".
	KeyExchange string
	// TLSVersion is the TLS version, e.g. "TLS 1.3"; empty for Noise.
	TLSVersion string
	// Outbound is true if this host dialed the connection.
	Outbound bool
	// LocalAddr and RemoteAddr are the connection's multiaddrs.
	LocalAddr, RemoteAddr string
}

// Conns describes the open connections to a node.
func (h *Host) Conns(id NodeID) []ConnInfo {
	pid, err := h.peerID(id)
	if err != nil {
		return nil
	}
	conns := h.host.Network().ConnsToPeer(pid)
	out := make([]ConnInfo, 0, len(conns))
	for _, c := range conns {
		out = append(out, connInfo(c))
	}
	return out
}

// connInfo reads the security state of a connection. libp2p reports only
// the protocol names, so the TLS state comes from below: QUIC exposes its
// quic.Conn through As, and for TCP the stateMuxer keeps the state of the
// TLS session it multiplexes.
func connInfo(c network.Conn) ConnInfo {
	st := c.ConnState()
	info := ConnInfo{
		Transport:  st.Transport,
		Outbound:   c.Stat().Direction == network.DirOutbound,
		LocalAddr:  c.LocalMultiaddr().String(),
		RemoteAddr: c.RemoteMultiaddr().String(),
	}
	var qc *quic.Conn
	var ts tls.ConnectionState
	switch {
	case c.As(&qc):
		ts = qc.ConnectionState().TLS
		info.Security = "tls"
	case st.Security == noise.ID:
		info.Security = "noise"
		info.KeyExchange = "X25519"
		return info
	case st.Security == libp2ptls.ID && c.As(&ts):
		info.Security = "tls"
	default:
		info.Security = string(st.Security)
		return info
	}
	info.KeyExchange = ts.CurveID.String()
	info.TLSVersion = tls.VersionName(ts.Version)
	return info
}

// stateMuxer is yamux that remembers the TLS state of the connection it
// multiplexes, the only place where libp2p still holds the *tls.Conn of a
// TCP connection.
type stateMuxer struct{ inner network.Multiplexer }

func (m stateMuxer) NewConn(nc net.Conn, isServer bool, scope network.PeerScope) (network.MuxedConn, error) {
	mc, err := m.inner.NewConn(nc, isServer, scope)
	if err != nil {
		return nil, err
	}
	tc, ok := nc.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return mc, nil
	}
	return &tlsMuxedConn{MuxedConn: mc, state: tc.ConnectionState()}, nil
}

// tlsMuxedConn adds the TLS state to what As can find.
type tlsMuxedConn struct {
	network.MuxedConn
	state tls.ConnectionState
}

func (c *tlsMuxedConn) As(target any) bool {
	if t, ok := target.(*tls.ConnectionState); ok {
		*t = c.state
		return true
	}
	return c.MuxedConn.As(target)
}
