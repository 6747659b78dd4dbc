package transport

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"log/slog"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// Host is a Strata node's endpoint on the network: a libp2p host that speaks
// the mix protocol, with a send pool keyed by NodeID. It is safe for
// concurrent use.
type Host struct {
	cfg  Config
	id   NodeID
	host host.Host
	m    *metrics
	log  *slog.Logger
	// Frame body buffers: bufs hold PacketSize bytes, entryBufs
	// EntryHeaderSize+PacketSize; putBuf tells them apart by length.
	bufs, entryBufs sync.Pool

	ctx    context.Context // done when the host closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // senders and stream readers

	mu       sync.RWMutex
	closed   bool
	peers    map[NodeID]*peerState
	inbound  map[peer.ID]int // open inbound mix streams per peer
	requests map[peer.ID]int // requests being served per peer
	handlers map[string]RequestHandler
	bans     map[peer.ID]banEntry
	// allowClassical accepts links without a post-quantum key exchange:
	// set when Config.Security lists Noise.
	allowClassical bool
}

// New starts a host. The host lives until Close is called or ctx is done.
func New(ctx context.Context, cfg Config) (*Host, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	key, err := crypto.UnmarshalEd25519PrivateKey(cfg.Identity)
	if err != nil {
		return nil, fmt.Errorf("transport: identity: %w", err)
	}
	h := &Host{
		cfg:      cfg,
		id:       NodeIDFromPublicKey(cfg.Identity.Public().(ed25519.PublicKey)),
		m:        m,
		peers:    make(map[NodeID]*peerState),
		inbound:  make(map[peer.ID]int),
		requests: make(map[peer.ID]int),
		handlers: make(map[string]RequestHandler),
		bans:     make(map[peer.ID]banEntry),
	}
	h.allowClassical = slices.Contains(cfg.Security, SecurityNoise)
	h.log = cfg.Logger.With("node", h.id.String())
	size := cfg.PacketSize
	h.bufs.New = func() any {
		b := make([]byte, size)
		return &b
	}
	h.entryBufs.New = func() any {
		b := make([]byte, EntryHeaderSize+size)
		return &b
	}
	h.ctx, h.cancel = context.WithCancel(context.WithoutCancel(ctx))

	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Muxer(yamux.ID, stateMuxer{inner: yamux.DefaultTransport}),
		libp2p.DisableRelay(),
		libp2p.Ping(false),
		libp2p.DisableMetrics(),
		// The pool, not libp2p, decides which connections live: a relay
		// keeps every client that chose it as home.
		libp2p.ConnectionManager(connmgr.NullConnMgr{}),
		libp2p.ConnectionGater(gater{h}),
		libp2p.UserAgent("strata"),
		libp2p.SwarmOpts(swarm.WithDialRanker(tcpFirst)),
	}
	if cfg.NoListen {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrStrings(cfg.ListenAddrs...))
	}
	for _, s := range cfg.Security {
		switch s {
		case SecurityTLS:
			opts = append(opts, libp2p.Security(libp2ptls.ID, libp2ptls.New))
		case SecurityNoise:
			opts = append(opts, libp2p.Security(noise.ID, noise.New))
		}
	}
	lh, err := libp2p.New(opts...)
	if err != nil {
		h.cancel()
		m.unregister()
		return nil, fmt.Errorf("transport: start libp2p host: %w", err)
	}
	h.host = lh
	lh.Network().Notify(&network.NotifyBundle{
		ConnectedF:    h.connected,
		DisconnectedF: h.disconnected,
	})
	lh.SetStreamHandler(ProtocolID, h.handleStream)
	go func() {
		select {
		case <-ctx.Done():
			h.Close()
		case <-h.ctx.Done():
		}
	}()
	h.log.Info("transport up", "addrs", h.Addrs())
	return h, nil
}

// ID returns the host's node id.
func (h *Host) ID() NodeID { return h.id }

// Addrs returns the multiaddrs other nodes can dial, each ending in
// /p2p/<peer id>.
func (h *Host) Addrs() []string {
	addrs := h.host.Addrs()
	if len(addrs) == 0 {
		return nil
	}
	full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.host.ID(), Addrs: addrs})
	if err != nil {
		return nil
	}
	out := make([]string, len(full))
	for i, a := range full {
		out[i] = a.String()
	}
	return out
}

// Close stops the host: it closes every connection, stops the senders,
// waits until no Handler call is running and unregisters the metrics.
// Packets still queued are dropped.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.host.RemoveStreamHandler(ProtocolID)
	h.mu.Lock()
	for proto := range h.handlers {
		h.host.RemoveStreamHandler(protocol.ID(proto))
	}
	h.mu.Unlock()
	err := h.host.Close()
	h.wg.Wait()
	h.m.unregister()
	if err != nil {
		return fmt.Errorf("transport: close: %w", err)
	}
	return nil
}

// PeerInfo returns what another host needs to add this one with AddPeer.
func (h *Host) PeerInfo() PeerInfo {
	return PeerInfo{
		ID:        h.id,
		PublicKey: h.cfg.Identity.Public().(ed25519.PublicKey),
		Addrs:     h.Addrs(),
	}
}
