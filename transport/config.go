package transport

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Handler receives one packet from a peer. pkt is exactly Config.PacketSize
// bytes and is borrowed: it is valid only until Handler returns, and Handler
// may modify it in place (for example to decrypt it) but must copy it to keep
// it. Handler is called from one goroutine per inbound stream, so calls for
// different peers run concurrently while the packets of one peer arrive in
// order, one call at a time. A Handler that blocks stalls only its peer's
// stream: flow control pushes back on that peer, which then sees its own send
// queue fill. Handler must not call [Host.Close].
type Handler func(from NodeID, pkt []byte)

// EntryHandler receives one entry frame: a peer asks this host to forward
// pkt to the node next (a client asking its home relay to send a packet into
// the first stratum, so that first-stratum relays never see the client).
// pkt is exactly Config.PacketSize bytes and borrowed as in [Handler]; next
// is a copy. The transport does not forward anything itself: what to do with
// the request (check that next is a first-stratum relay, that from is a
// client of this home, then TrySend) is the caller's policy. It is called as
// Handler is, from the reader goroutine of from's stream, in order with that
// peer's packets.
type EntryHandler func(from, next NodeID, pkt []byte)

// Security names a libp2p security protocol for TCP connections. QUIC always
// uses TLS 1.3.
type Security int

// The security protocols a host can offer.
const (
	// SecurityTLS is libp2p TLS 1.3 (/tls/1.0.0). Go's crypto/tls
	// negotiates the hybrid post-quantum group X25519MLKEM768 by default.
	SecurityTLS Security = iota + 1
	// SecurityNoise is libp2p Noise XX with X25519 (/noise); it is
	// classical only. libp2p chooses the security protocol with
	// multistream-select, in the clear and unauthenticated, so a host that
	// offers Noise beside TLS can be downgraded to Noise by an on-path
	// attacker (who answers "na" to /tls/1.0.0) whenever its peer offers
	// Noise too.
	SecurityNoise
)

// NodeSecurity returns the security protocols a node offers: TLS 1.3 only,
// or TLS 1.3 then Noise when allowNoise is set (a config's
// allow_classical_noise). Nodes pass it as Config.Security.
func NodeSecurity(allowNoise bool) []Security {
	if allowNoise {
		return []Security{SecurityTLS, SecurityNoise}
	}
	return []Security{SecurityTLS}
}

func (s Security) String() string {
	switch s {
	case SecurityTLS:
		return "tls"
	case SecurityNoise:
		return "noise"
	}
	return fmt.Sprintf("Security(%d)", int(s))
}

// Config configures a [Host]. Every field but Identity and PacketSize may be
// left zero to take its default.
type Config struct {
	// Identity is the node's Ed25519 identity key; it names the node (see
	// NodeID) and authenticates its connections. Required.
	Identity ed25519.PrivateKey

	// PacketSize is the exact size of every packet, in bytes, between 1 and
	// 65503 (so that an entry frame, EntryHeaderSize bytes longer, still
	// fits the 16-bit frame length). Required. Strata's Sphinx packets are
	// 2341 bytes.
	PacketSize int

	// ListenAddrs are the multiaddrs to listen on. Default:
	// /ip4/127.0.0.1/tcp/0 and /ip4/127.0.0.1/udp/0/quic-v1 (random ports
	// on loopback). Ignored when NoListen is set.
	ListenAddrs []string

	// NoListen makes a host that only dials, as a client does: it can still
	// receive packets on the connections it opened.
	NoListen bool

	// Security lists the security protocols offered and accepted on TCP,
	// most preferred first. Default: SecurityTLS only, so that there is
	// nothing weaker than TLS 1.3 with X25519MLKEM768 for an attacker to
	// negotiate the link down to. A host that does not list SecurityNoise
	// also refuses every connection, TCP or QUIC, whose key exchange was
	// not X25519MLKEM768 (a classical-only TLS peer). List SecurityNoise
	// only to reach peers that cannot speak TLS, or not with the hybrid,
	// knowing that it makes links to peers that also offer Noise
	// downgradable to classical X25519 (see SecurityNoise).
	Security []Security

	// Handler receives the packets. Default: packets are counted and
	// discarded.
	Handler Handler

	// Entry receives entry frames (see [Host.TrySendVia]). Default nil: the
	// host accepts no entry frames, and a peer that sends one is treated as
	// for any wrong-size frame (disconnected and banned).
	Entry EntryHandler

	// Connected, if set, learns of every new connection to a node (so
	// possibly more than once per node), Disconnected of a node's last
	// connection closing; a relay's home service uses them to know its
	// clients. They run on libp2p's notification goroutine and must not
	// block.
	Connected    func(id NodeID)
	Disconnected func(id NodeID)

	// SendQueue is the number of packets each peer's send queue holds.
	// Default 512.
	SendQueue int

	// MaxStreamsPerPeer is how many inbound mix streams a peer may hold open
	// at once; one more and the peer is disconnected. It also bounds the
	// requests one peer may have served at once (more are reset, without
	// disconnecting). Default 4.
	MaxStreamsPerPeer int

	// WriteTimeout bounds one batch of writes to a peer; a peer that does not
	// read for this long has its stream reset and is redialled. Default 10s.
	WriteTimeout time.Duration

	// DialTimeout bounds opening a stream, including dialing. Default 10s.
	DialTimeout time.Duration

	// RequestTimeout bounds one request on both sides: Host.Request gives
	// up after it (or earlier if its context ends), and a handler's stream
	// is reset if the request and its answer have not crossed within it.
	// Default 10s.
	RequestTimeout time.Duration

	// BanDuration is how long a peer disconnected for bad input is refused,
	// in both directions. Default 30s; negative disables bans.
	BanDuration time.Duration

	// Registerer receives the host's metrics. Default: metrics are kept but
	// not registered. Hosts that share a registry must wrap it with distinct
	// labels (prometheus.WrapRegistererWith).
	Registerer prometheus.Registerer

	// Logger receives the host's logs. Default: logs are discarded.
	Logger *slog.Logger
}

// withDefaults checks c and returns a copy with zero fields filled in.
func (c Config) withDefaults() (Config, error) {
	if len(c.Identity) != ed25519.PrivateKeySize {
		return c, fmt.Errorf("transport: config: Identity: %w (got %d bytes)", ErrNotEd25519, len(c.Identity))
	}
	if c.PacketSize <= 0 || c.PacketSize > maxPacketSize {
		return c, fmt.Errorf("transport: config: PacketSize %d outside 1..%d", c.PacketSize, maxPacketSize)
	}
	if c.ListenAddrs == nil && !c.NoListen {
		c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	if len(c.Security) == 0 {
		c.Security = []Security{SecurityTLS}
	}
	for _, s := range c.Security {
		if s != SecurityTLS && s != SecurityNoise {
			return c, fmt.Errorf("transport: config: unknown %v", s)
		}
	}
	if c.Handler == nil {
		c.Handler = func(NodeID, []byte) {}
	}
	if c.SendQueue < 0 || c.MaxStreamsPerPeer < 0 || c.WriteTimeout < 0 || c.DialTimeout < 0 || c.RequestTimeout < 0 {
		return c, fmt.Errorf("transport: config: negative SendQueue, MaxStreamsPerPeer, WriteTimeout, DialTimeout or RequestTimeout")
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = defaultRequestTimeout
	}
	if c.SendQueue == 0 {
		c.SendQueue = defaultSendQueue
	}
	if c.MaxStreamsPerPeer == 0 {
		c.MaxStreamsPerPeer = defaultMaxStreamsPerPeer
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.BanDuration == 0 {
		c.BanDuration = defaultBanDuration
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
