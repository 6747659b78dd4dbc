package transport

import (
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// banEntry records until when a peer is refused.
type banEntry struct{ until time.Time }

// maxBans bounds the ban table; past it, expired entries are swept.
const maxBans = 1024

func (h *Host) ban(pid peer.ID) {
	if h.cfg.BanDuration < 0 {
		return
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bans) >= maxBans {
		for p, e := range h.bans {
			if now.After(e.until) {
				delete(h.bans, p)
			}
		}
	}
	h.bans[pid] = banEntry{until: now.Add(h.cfg.BanDuration)}
}

func (h *Host) banned(pid peer.ID) bool {
	h.mu.RLock()
	e, ok := h.bans[pid]
	h.mu.RUnlock()
	return ok && time.Now().Before(e.until)
}

// gater refuses connections to and from banned peers and, unless the host
// allows classical links, connections whose key exchange is not
// post-quantum.
type gater struct{ h *Host }

func (g gater) InterceptPeerDial(p peer.ID) bool             { return !g.h.banned(p) }
func (g gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g gater) InterceptAccept(network.ConnMultiaddrs) bool  { return true }

// InterceptUpgraded refuses a connection whose handshake was not TLS 1.3
// with X25519MLKEM768 when the host offers only TLS: offering only TLS
// stops an attacker from negotiating Noise, but a classical-only peer
// (another TLS stack, GODEBUG=tlsmlkem=0) would still agree on plain
// X25519. It runs before the connection carries any stream.
func (g gater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	if g.h.allowClassical {
		return true, 0
	}
	if info := connInfo(c); info.Security != "tls" || info.KeyExchange != pqKeyExchange {
		g.h.m.disconnects.WithLabelValues(reasonClassical).Inc()
		g.h.log.Warn("refusing classical link", "peer", c.RemotePeer(), "security", info.Security, "key_exchange", info.KeyExchange, "transport", info.Transport)
		return false, 0
	}
	return true, 0
}

func (g gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	if g.h.banned(p) {
		g.h.m.disconnects.WithLabelValues(reasonBanned).Inc()
		return false
	}
	return true
}
