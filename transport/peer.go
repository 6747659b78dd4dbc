package transport

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// PeerInfo describes a node this host may send to.
type PeerInfo struct {
	// ID is the node id. Optional: when set it must equal
	// NodeIDFromPublicKey(PublicKey).
	ID NodeID
	// PublicKey is the node's Ed25519 identity key. Required.
	PublicKey ed25519.PublicKey
	// Addrs are multiaddrs to dial, with or without a trailing /p2p/<peer
	// id>. May be empty for a node that only ever dials this host.
	Addrs []string
}

// peerState is one entry of the send pool. Static entries come from AddPeer
// and stay until RemovePeer; dynamic ones stand for a node connected to us
// that we know no addresses for (a client whose home we are) and go when its
// last connection closes.
type peerState struct {
	id     NodeID
	pid    peer.ID
	static bool           // guarded by Host.mu
	addrs  []ma.Multiaddr // from AddPeer; guarded by Host.mu

	start sync.Once
	queue chan *[]byte  // made by start
	done  chan struct{} // closed when the entry leaves the pool

	retryAt atomic.Int64 // reachability, see unreachable.go
}

// AddPeer adds a node to the send pool or replaces its addresses. The pool
// dials it on the first Send, not before.
func (h *Host) AddPeer(info PeerInfo) error {
	if len(info.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("transport: add peer: %w (%d bytes)", ErrNotEd25519, len(info.PublicKey))
	}
	id := NodeIDFromPublicKey(info.PublicKey)
	if !info.ID.IsZero() && info.ID != id {
		return fmt.Errorf("transport: add peer %v: %w (key hashes to %v)", info.ID, ErrNodeIDMismatch, id)
	}
	if id == h.id {
		return fmt.Errorf("transport: add peer %v: %w", id, ErrSelf)
	}
	pid, err := peerIDOfPublicKey(info.PublicKey)
	if err != nil {
		return err
	}
	addrs := make([]ma.Multiaddr, 0, len(info.Addrs))
	for _, s := range info.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("transport: add peer %v: address %q: %w", id, s, err)
		}
		tpt, p2p := peer.SplitAddr(a)
		if tpt == nil {
			return fmt.Errorf("transport: add peer %v: address %q has no transport part", id, s)
		}
		if p2p != "" && p2p != pid {
			return fmt.Errorf("transport: add peer %v: address %q names peer %s, key gives %s", id, s, p2p, pid)
		}
		addrs = append(addrs, tpt)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	p := h.peers[id]
	if p == nil {
		p = h.addPeerLocked(id, pid, true)
	}
	p.static = true
	p.addrs = addrs
	h.setDialAddrsLocked(p)
	return nil
}

// RemovePeer takes a node out of the send pool and forgets its addresses;
// its queued packets are dropped. A node still connected to us stays
// reachable over that connection until it closes.
func (h *Host) RemovePeer(id NodeID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.peers[id]
	if p == nil {
		return
	}
	p.addrs = nil
	h.setDialAddrsLocked(p)
	if h.host.Network().Connectedness(p.pid) == network.Connected {
		p.static = false
		return
	}
	h.removePeerLocked(p)
}

// Connect dials a node added with AddPeer unless a connection exists, and
// waits until the connection is up. Clients use it to hold the connection to
// their home relay on which the relay pushes packets back. The caller's
// retries are the backoff: libp2p's own dial backoff, which would hold a
// restarted peer off for seconds after a failed dial, is bypassed.
func (h *Host) Connect(ctx context.Context, id NodeID) error {
	pid, err := h.peerID(id)
	if err != nil {
		return err
	}
	ctx = network.WithForceDirectDial(ctx, "strata connect")
	if err := h.host.Connect(ctx, peer.AddrInfo{ID: pid}); err != nil {
		return fmt.Errorf("transport: connect to %v: %w", id, err)
	}
	return nil
}

// IsConnected reports whether the host has an open connection to the node.
func (h *Host) IsConnected(id NodeID) bool {
	pid, err := h.peerID(id)
	if err != nil {
		return false
	}
	return h.host.Network().Connectedness(pid) == network.Connected
}

func (h *Host) peerID(id NodeID) (peer.ID, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return "", ErrClosed
	}
	p := h.peers[id]
	if p == nil {
		return "", fmt.Errorf("transport: %v: %w", id, ErrUnknownPeer)
	}
	return p.pid, nil
}

// setDialAddrsLocked makes the peerstore hold exactly the addresses given to
// AddPeer. Identify adds whatever a peer announces, which may be stale after
// the peer restarts and would make dials wait on dead addresses; the PKI, not
// the peer, says where a node is. A peer with no addresses is never dialed.
func (h *Host) setDialAddrsLocked(p *peerState) {
	ps := h.host.Peerstore()
	ps.ClearAddrs(p.pid)
	ps.AddAddrs(p.pid, p.addrs, peerstore.PermanentAddrTTL)
}

func (h *Host) addPeerLocked(id NodeID, pid peer.ID, static bool) *peerState {
	p := &peerState{id: id, pid: pid, static: static, done: make(chan struct{})}
	h.peers[id] = p
	h.m.peers.Set(float64(len(h.peers)))
	return p
}

func (h *Host) removePeerLocked(p *peerState) {
	delete(h.peers, p.id)
	close(p.done)
	h.m.peers.Set(float64(len(h.peers)))
}

// connected makes every connected node reachable by NodeID, so that a relay
// can push packets to a client over the connection the client opened.
func (h *Host) connected(_ network.Network, c network.Conn) {
	info := connInfo(c)
	h.m.handshakes.WithLabelValues(info.Transport, info.Security, info.KeyExchange).Inc()
	id, err := nodeIDOfLibp2pKey(c.RemotePublicKey())
	if err != nil {
		// Strata nodes are named by Ed25519 keys only; nothing could ever
		// address this peer. Closing blocks on the swarm, so not here.
		h.log.Warn("closing connection from peer without Ed25519 key", "peer", c.RemotePeer(), "err", err)
		go c.Close()
		return
	}
	h.log.Debug("connected", "peer", id, "transport", info.Transport, "security", info.Security, "key_exchange", info.KeyExchange, "outbound", info.Outbound)
	if h.cfg.Connected != nil {
		h.cfg.Connected(id)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if p := h.peers[id]; p != nil {
		// The node just proved it is up; try it again at once.
		p.setReachable()
		return
	}
	h.addPeerLocked(id, c.RemotePeer(), false)
}

func (h *Host) disconnected(n network.Network, c network.Conn) {
	if n.Connectedness(c.RemotePeer()) == network.Connected {
		return
	}
	id, err := nodeIDOfLibp2pKey(c.RemotePublicKey())
	if err != nil {
		return
	}
	if h.cfg.Disconnected != nil {
		h.cfg.Disconnected(id)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.peers[id]; p != nil && !p.static && n.Connectedness(p.pid) != network.Connected {
		h.removePeerLocked(p)
	}
}
