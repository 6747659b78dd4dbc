package client

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// ErrPushFrame means a frame pushed by a home relay is not laid out as
// EncodePush lays it out.
var ErrPushFrame = errors.New("client: malformed push frame")

// EncodePush writes into frame (Geometry.PacketSize bytes, the size of
// every frame on /strata/mix/1) the push of a packet for SURB id whose
// unwrapped payload is payload (Geometry.PayloadSize bytes):
//
//	SURB id (16) ‖ payload (PayloadSize, still encrypted) ‖ zeros up to PacketSize
//
// A push frame is exactly as long as a packet, so a client's link carries
// frames of one size in both directions.
func EncodePush(g sphinx.Geometry, frame []byte, id sphinx.SURBID, payload []byte) error {
	if len(frame) != g.PacketSize() || len(payload) != g.PayloadSize || sphinx.SURBIDSize+g.PayloadSize > len(frame) {
		return fmt.Errorf("%w: frame %d bytes, payload %d", ErrPushFrame, len(frame), len(payload))
	}
	n := copy(frame, id[:])
	n += copy(frame[n:], payload)
	clear(frame[n:])
	return nil
}

// ParsePush parses a frame written by EncodePush; payload aliases frame.
func ParsePush(g sphinx.Geometry, frame []byte) (id sphinx.SURBID, payload []byte, err error) {
	end := sphinx.SURBIDSize + g.PayloadSize
	if len(frame) != g.PacketSize() || end > len(frame) {
		return id, nil, fmt.Errorf("%w: %d bytes, want %d", ErrPushFrame, len(frame), g.PacketSize())
	}
	for _, b := range frame[end:] {
		if b != 0 {
			return id, nil, fmt.Errorf("%w: nonzero padding", ErrPushFrame)
		}
	}
	copy(id[:], frame)
	return id, frame[sphinx.SURBIDSize:end], nil
}

// HomeEpoch is what a Home needs of an epoch's topology.
type HomeEpoch struct {
	Epoch uint64
	// FirstStratum lists the relays of the epoch's first stratum: the only
	// next hops a client's entry frames may name.
	FirstStratum []sphinx.NodeID
	// Rates are the network's client rates (λP, λL, λD); a client's entry
	// rate is HomeConfig.RateMultiple times their sum.
	Rates Rates
}

// HomeEpochOf returns the HomeEpoch of a verified topology.
func HomeEpochOf(top *pki.Topology) HomeEpoch {
	e := HomeEpoch{Epoch: top.Epoch, Rates: Rates{Payload: top.Params.LambdaP, Loop: top.Params.LambdaL, Drop: top.Params.LambdaD}}
	for _, r := range top.Relays {
		if r.Layer == 0 {
			e.FirstStratum = append(e.FirstStratum, r.ID)
		}
	}
	return e
}

// Defaults of HomeConfig.
const (
	DefaultRateMultiple = 4.0
	DefaultEntryBurst   = 64
	// entryStart is how many packets a newly registered client may send
	// at once: its bucket starts this full, not EntryBurst full, so a
	// machine that makes a fresh identity per connection (or reconnects)
	// gains only entryStart packets per handshake. A client sending at
	// its Poisson rates λ against a bucket refilled at 4λ overflows one
	// that starts with 4 tokens with probability ≈ e^(−2.33·4) ≈ 1e-4
	// per connection (Cramér–Lundberg: e^θ = 1 + 4θ).
	entryStart = 4
	// minEntryRate is the entry rate of a network whose client rates sum
	// to zero (streams off), per client.
	minEntryRate = 1.0
)

// HomeConfig configures a Home.
type HomeConfig struct {
	// Host is the relay's transport; its Config.Entry must call
	// Home.Entry, its Connected and Disconnected hooks the Home's. Required.
	Host *transport.Host
	// Geometry is the packet geometry. Required.
	Geometry sphinx.Geometry
	// Epoch is the topology the relay starts with. Required.
	Epoch HomeEpoch
	// Inject hands the relay's own pipeline a packet whose first hop is
	// this relay (relay.Relay.Inject); it must not wait and must copy pkt.
	// Required.
	Inject func(pkt []byte) error
	// RateMultiple is a client's entry rate as a multiple of the network's
	// client rates λP + λL + λD. Default 4: a client sending at its rates
	// overflows its bucket with negligible probability.
	RateMultiple float64
	// EntryRate, if positive, overrides the entry rate per client, in
	// packets per second (tests, benchmarks).
	EntryRate float64
	// EntryBurst is how many packets a client may send at once beyond its
	// rate (the bucket's depth). Default 64. A newly registered client's
	// bucket starts with 4 (or EntryBurst, if smaller) and fills at the
	// entry rate.
	EntryBurst int
	// Registerer receives the home's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	Logger     *slog.Logger

	// now, if set (by tests), replaces time.Now for the token buckets.
	now func() time.Time
}

// homeClient is a registered client: its secret, its bucket, its counts.
type homeClient struct {
	secret HomeSecret
	bucket tokenBucket
	// forwarded and dropped count its entry frames (tests read them).
	forwarded, dropped uint64
}

// Home is the relay side of home delivery and entry. It registers the
// secrets of the clients connected to this relay, pushes the packets that
// end with DeliverToClient here down the connection of the client whose
// token they name, and forwards its clients' packets into the first
// stratum (entry frames), so that no other relay ever sees a client.
// Package node wires it into every relay.
type Home struct {
	cfg    HomeConfig
	host   *transport.Host
	self   sphinx.NodeID
	geo    sphinx.Geometry
	log    *slog.Logger
	m      homeMetrics
	bufs   sync.Pool
	now    func() time.Time
	inject func([]byte) error

	mu    sync.Mutex
	epoch HomeEpoch
	first map[sphinx.NodeID]struct{} // first strata of the current and previous epoch
	// prevFirst is the first stratum of the epoch before the current one.
	prevFirst []sphinx.NodeID
	clients   map[sphinx.NodeID]*homeClient
	tokens    map[sphinx.DeliveryToken]sphinx.NodeID
	rate      float64 // entry packets per second per client
}

// ErrHomeConfig means a HomeConfig lacks a required field.
var ErrHomeConfig = errors.New("client: home: Host, Inject and Geometry are required")

// NewHome returns the home service of the relay whose transport is
// cfg.Host, and registers RegisterProtocol on it.
func NewHome(cfg HomeConfig) (*Home, error) {
	if cfg.Host == nil || cfg.Inject == nil || cfg.Geometry.PacketSize() <= 0 {
		return nil, ErrHomeConfig
	}
	if cfg.RateMultiple <= 0 || math.IsNaN(cfg.RateMultiple) || math.IsInf(cfg.RateMultiple, 0) {
		cfg.RateMultiple = DefaultRateMultiple
	}
	if cfg.EntryBurst <= 0 {
		cfg.EntryBurst = DefaultEntryBurst
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.now
	if now == nil {
		now = time.Now
	}
	h := &Home{
		cfg: cfg, host: cfg.Host, self: sphinx.NodeID(cfg.Host.ID()), geo: cfg.Geometry, log: log,
		m: newHomeMetrics(cfg.Registerer), now: now, inject: cfg.Inject,
		first: map[sphinx.NodeID]struct{}{}, clients: map[sphinx.NodeID]*homeClient{},
		tokens: map[sphinx.DeliveryToken]sphinx.NodeID{},
	}
	h.bufs.New = func() any { b := make([]byte, cfg.Geometry.PacketSize()); return &b }
	h.epoch.Epoch = cfg.Epoch.Epoch
	h.SetTopology(cfg.Epoch)
	cfg.Host.Handle(RegisterProtocol, h.register)
	return h, nil
}

// SetTopology moves the home to a topology: at a new epoch the tokens move
// (SURBs of the epoch before stay deliverable, older ones die) and the
// first stratum of the epoch before stays a valid entry next hop (packets
// built just before the change); within an epoch the first stratum and
// the rates are replaced.
func (h *Home) SetTopology(e HomeEpoch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Epoch != h.epoch.Epoch {
		h.prevFirst = h.epoch.FirstStratum
	}
	moved := e.Epoch != h.epoch.Epoch
	h.epoch = e
	clear(h.first)
	for _, id := range slices.Concat(e.FirstStratum, h.prevFirst) {
		h.first[id] = struct{}{}
	}
	if moved {
		clear(h.tokens)
		for id, c := range h.clients {
			h.addTokensLocked(id, c.secret)
		}
	}
	sum := e.Rates.Payload + e.Rates.Loop + e.Rates.Drop
	h.rate = max(minEntryRate, h.cfg.RateMultiple*sum)
	if h.cfg.EntryRate > 0 {
		h.rate = h.cfg.EntryRate
	}
	for _, c := range h.clients {
		c.bucket.rate = h.rate
	}
}

// window returns the epochs whose tokens the home accepts: the previous,
// the current and the next (a client may move a little before its home).
func (h *Home) window() []uint64 {
	e := h.epoch.Epoch
	switch e {
	case 0:
		return []uint64{0, 1}
	case math.MaxUint64:
		return []uint64{e - 1, e}
	}
	return []uint64{e - 1, e, e + 1}
}

// addTokensLocked accepts the tokens of secret s for client id.
func (h *Home) addTokensLocked(id sphinx.NodeID, s HomeSecret) {
	for _, e := range h.window() {
		h.tokens[s.Token(e)] = id
	}
}

// dropTokensLocked forgets the tokens of secret s.
func (h *Home) dropTokensLocked(id sphinx.NodeID, s HomeSecret) {
	for _, e := range h.window() {
		if t := s.Token(e); h.tokens[t] == id {
			delete(h.tokens, t)
		}
	}
}

// Errors of registration, as the home's request handler returns them.
var (
	ErrWrongHome  = errors.New("client: home: registration names another relay")
	ErrTokenTaken = errors.New("client: home: the secret's tokens are bound to another node")
)

// registered is the home's answer to a registration it accepted.
var registered = []byte{1}

// register is the RegisterProtocol handler: node from, connected, binds a
// secret. A node registering again replaces its secret.
func (h *Home) register(from transport.NodeID, req []byte) ([]byte, error) {
	home, s, err := ParseRegister(req)
	if err != nil {
		h.m.registrations.WithLabelValues("malformed").Inc()
		return nil, err
	}
	if home != h.self {
		h.m.registrations.WithLabelValues("wrong_home").Inc()
		return nil, ErrWrongHome
	}
	id := sphinx.NodeID(from)
	h.mu.Lock()
	for _, e := range h.window() {
		if owner, ok := h.tokens[s.Token(e)]; ok && owner != id {
			h.mu.Unlock()
			h.m.registrations.WithLabelValues("token_taken").Inc()
			return nil, ErrTokenTaken
		}
	}
	c := h.clients[id]
	if c == nil {
		c = &homeClient{}
		h.clients[id] = c
		c.bucket = tokenBucket{rate: h.rate, depth: float64(h.cfg.EntryBurst), level: float64(min(entryStart, h.cfg.EntryBurst)), last: h.now()}
	} else {
		h.dropTokensLocked(id, c.secret)
	}
	c.secret = s
	h.addTokensLocked(id, s)
	h.m.clients.Set(float64(len(h.clients)))
	h.mu.Unlock()
	// A disconnect between the request and here has already run: undo.
	if !h.host.IsConnected(from) {
		h.Disconnected(from)
		h.m.registrations.WithLabelValues("gone").Inc()
		return nil, transport.ErrUnknownPeer
	}
	h.m.registrations.WithLabelValues("ok").Inc()
	return registered, nil
}

// Connected is the transport's Connected hook. A connection alone binds
// nothing: a client registers its secret over it.
func (h *Home) Connected(transport.NodeID) {}

// Disconnected is the transport's Disconnected hook: the node's last
// connection closed, so its registration is forgotten. A call for a node
// that is connected again is stale (the transport checks, then calls; the
// node may have reconnected and registered in between) and is ignored:
// the check runs under the home's lock, which register takes too, so a
// registration is either seen connected here or made after.
func (h *Home) Disconnected(id transport.NodeID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.host.IsConnected(id) {
		return
	}
	n := sphinx.NodeID(id)
	c, ok := h.clients[n]
	if !ok {
		return
	}
	h.dropTokensLocked(n, c.secret)
	delete(h.clients, n)
	h.m.clients.Set(float64(len(h.clients)))
}

// bound reports whether node id is registered (tests).
func (h *Home) bound(id sphinx.NodeID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.clients[id]
	return ok
}

// Deliver pushes a packet that ended at this relay with DeliverToClient to
// the registered client its token names; payload is the unwrapped payload.
// It never blocks: an unknown token, a malformed payload or a full client
// queue drop the packet and count it.
func (h *Home) Deliver(token sphinx.DeliveryToken, id sphinx.SURBID, payload []byte) {
	h.mu.Lock()
	c, ok := h.tokens[token]
	h.mu.Unlock()
	if !ok {
		h.m.drop(dropUnknownToken)
		return
	}
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	frame := *bp
	if err := EncodePush(h.geo, frame, id, payload); err != nil {
		h.m.drop(dropMalformed)
		return
	}
	if err := h.host.TrySend(transport.NodeID(c), frame); err != nil {
		h.m.drop(dropQueueFull)
		h.log.Debug("home push dropped", "client", c, "err", err)
		return
	}
	h.m.pushed.Inc()
}
