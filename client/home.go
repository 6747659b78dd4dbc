package client

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// HomeToken returns the delivery token that SURBs of client, made under
// epoch's keys, name at its home relay home:
//
//	SHA-256("strata-home-token-v1" ‖ client id ‖ home id ‖ epoch (8, big endian))[0:16]
//
// Both sides compute it, so a client needs no message to bind its SURBs to
// its connection: the home relay derives the tokens of every node connected
// to it. The token tells the home nothing it does not know already (which
// connection to push to), and no other hop ever sees it.
func HomeToken(client, home sphinx.NodeID, epoch uint64) sphinx.DeliveryToken {
	h := sha256.New()
	h.Write([]byte("strata-home-token-v1"))
	h.Write(client[:])
	h.Write(home[:])
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], epoch)
	h.Write(e[:])
	var t sphinx.DeliveryToken
	copy(t[:], h.Sum(nil))
	return t
}

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

// Home is the relay side of home delivery: it pushes the packets that end
// with DeliverToClient at this relay down the connection of the client
// whose token they name. Package node wires Deliver as the relay's
// Local.Client and Connected/Disconnected as the transport's hooks.
type Home struct {
	host   *transport.Host
	self   sphinx.NodeID
	geo    sphinx.Geometry
	log    *slog.Logger
	pushed prometheus.Counter
	nodes  prometheus.Gauge
	drops  *prometheus.CounterVec

	mu      sync.Mutex
	epoch   uint64
	clients map[sphinx.NodeID]struct{}
	tokens  map[sphinx.DeliveryToken]sphinx.NodeID
	bufs    sync.Pool
}

// NewHome returns the home service of the relay whose transport is host.
func NewHome(host *transport.Host, geo sphinx.Geometry, epoch uint64, reg prometheus.Registerer, log *slog.Logger) *Home {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Home{
		host: host, self: sphinx.NodeID(host.ID()), geo: geo, log: log, epoch: epoch,
		clients: map[sphinx.NodeID]struct{}{}, tokens: map[sphinx.DeliveryToken]sphinx.NodeID{},
		pushed: prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_home_pushed_total", Help: "Packets pushed to connected clients."}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strata_home_nodes",
			Help: "Connected nodes whose tokens this home accepts (its clients, and the other nodes connected to it)."}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_home_dropped_total",
			Help: "Packets for clients dropped, by reason (unknown_token, queue_full, malformed)."}, []string{"reason"}),
	}
	h.bufs.New = func() any { b := make([]byte, geo.PacketSize()); return &b }
	if reg != nil {
		reg.MustRegister(h.pushed, h.drops, h.nodes)
	}
	return h
}

// Connected learns that node id connected: from now on packets for its
// tokens are pushed to it.
func (h *Home) Connected(id transport.NodeID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := sphinx.NodeID(id)
	if _, ok := h.clients[n]; ok {
		return
	}
	h.clients[n] = struct{}{}
	h.nodes.Set(float64(len(h.clients)))
	h.addTokensLocked(n)
}

// Disconnected forgets node id.
func (h *Home) Disconnected(id transport.NodeID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := sphinx.NodeID(id)
	if _, ok := h.clients[n]; !ok {
		return
	}
	delete(h.clients, n)
	h.nodes.Set(float64(len(h.clients)))
	for _, e := range h.window() {
		delete(h.tokens, HomeToken(n, h.self, e))
	}
}

// bound reports whether node id is connected and its tokens accepted.
func (h *Home) bound(id sphinx.NodeID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.clients[id]
	return ok
}

// SetEpoch moves the tokens to a new key epoch: SURBs of the epoch before
// it stay deliverable (packets in flight), older ones die.
func (h *Home) SetEpoch(epoch uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epoch = epoch
	clear(h.tokens)
	for c := range h.clients {
		h.addTokensLocked(c)
	}
}

// addTokensLocked accepts c's tokens of the current epoch, the previous
// one and the next (a client may switch a little before its home).
func (h *Home) addTokensLocked(c sphinx.NodeID) {
	for _, e := range h.window() {
		h.tokens[HomeToken(c, h.self, e)] = c
	}
}

// window returns the epochs whose tokens the home accepts.
func (h *Home) window() []uint64 {
	if h.epoch == 0 {
		return []uint64{0, 1}
	}
	if h.epoch == ^uint64(0) {
		return []uint64{h.epoch - 1, h.epoch}
	}
	return []uint64{h.epoch - 1, h.epoch, h.epoch + 1}
}

// Deliver pushes a packet that ended at this relay with DeliverToClient to
// the client its token names; payload is the unwrapped payload. It never
// blocks: when the client's queue is full the packet is dropped and
// counted, like any packet a congested link loses.
func (h *Home) Deliver(token sphinx.DeliveryToken, id sphinx.SURBID, payload []byte) {
	h.mu.Lock()
	c, ok := h.tokens[token]
	h.mu.Unlock()
	if !ok {
		h.drops.WithLabelValues("unknown_token").Inc()
		return
	}
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	frame := *bp
	if err := EncodePush(h.geo, frame, id, payload); err != nil {
		h.drops.WithLabelValues("malformed").Inc()
		return
	}
	if err := h.host.TrySend(transport.NodeID(c), frame); err != nil {
		h.drops.WithLabelValues("queue_full").Inc()
		h.log.Debug("home push dropped", "client", c, "err", err)
		return
	}
	h.pushed.Inc()
}
