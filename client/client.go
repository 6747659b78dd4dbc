package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// Errors of the client.
var (
	ErrNoRoute     = errors.New("client: the topology has no route")
	ErrTooLarge    = errors.New("client: payload larger than PayloadSize")
	ErrClosed      = errors.New("client: closed")
	ErrUnknownHome = errors.New("client: home relay is not in the topology")
)

// lengthPrefix is the size of the payload length that precedes a message in
// a packet: messages shorter than PayloadSize are zero padded, so every
// packet carries the same number of bytes.
const lengthPrefix = 2

// Config configures a Client.
type Config struct {
	// Identity is the client's Ed25519 identity key; it names the client
	// to its home relay. Required.
	Identity ed25519.PrivateKey
	// DataDir holds the SURB unwinding database (surbs.db). Required.
	DataDir string
	// Home is the relay the client connects to, and sends every packet
	// through. Required.
	Home transport.PeerInfo
	// HomeFailover is how long the home may stay unreachable before the
	// client moves to another relay of the topology (chosen uniformly,
	// excluding the failed one). A home that leaves the topology is left
	// at once. Default 30 s.
	HomeFailover time.Duration
	// Topology returns the verified topology of the current epoch (a
	// pki.TopologyCache's Current, or a fixed document in tests). Required.
	Topology func() *pki.Topology
	// Rates overrides the topology's Loopix rates; nil takes them from the
	// topology the client starts with. The home limits a client's entry
	// frames to HomeConfig.RateMultiple (4) times the topology's rates, and
	// a newly registered client starts with 4 packets in hand, so rates
	// above the topology's lose packets at the home.
	Rates *Rates
	// SendQueue is how many packets Send may queue for the payload
	// stream; default 256.
	SendQueue int
	// Receive is the capacity of the Receive channel; default 256. When it
	// is full, pushes from the home relay wait: the home's link to this
	// client backs up, and the home drops what it cannot queue.
	Receive int
	// Registerer receives the client's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	Logger     *slog.Logger

	// trace, if set (by tests), learns of every packet when it has been
	// handed to the link: its slot, whether it was real, and when the
	// link took it (zero if no packet left).
	trace func(s Slot, real bool, wire time.Time)
}

// Destination is where a packet goes: a mailbox node (ToMailbox) or the
// creator of a SURB (ViaSURB).
type Destination struct {
	mailbox sphinx.NodeID
	surb    *sphinx.SURB
}

// ToMailbox addresses a forward packet through the strata to mailbox node
// node, whose final command is DeliverToMailbox.
func ToMailbox(node sphinx.NodeID) Destination { return Destination{mailbox: node} }

// Sent describes a packet that left the client.
type Sent struct {
	// Expected is when the packet reaches its final hop: the send time
	// plus the deterministic delays of its route (zero for SURB replies,
	// whose delays only the SURB's creator knows).
	Expected time.Time
	// Route lists the hops, first to last.
	Route []sphinx.NodeID
}

// SURB is a single-use reply block the client made.
type SURB struct {
	// Bytes is the encoded SURB, for the replier (see ViaSURB).
	Bytes []byte
	ID    sphinx.SURBID
	// Delay is the total deterministic delay a reply takes from the SURB's
	// first hop to this client's home relay.
	Delay time.Duration
	// Epoch is the key epoch the SURB was made under; it dies with it.
	Epoch uint64
}

// Reply is a decrypted reply to one of the client's SURBs.
type Reply struct {
	SURB    sphinx.SURBID
	Payload []byte
	Arrived time.Time
}

// Source feeds the payload stream: at each payload slot with nothing queued
// by Send, the client asks it for a packet; ok false sends cover instead.
// Next must not block.
type Source interface {
	Next(now time.Time) (dest Destination, payload []byte, ok bool)
}

// Stats are the client's counters.
type Stats struct {
	Real, Cover, Loops         uint64
	LoopsReturned, LoopsLost   uint64
	Replies, RepliesUnknown    uint64
	RepliesBad, FramesRejected uint64
	// SendErrors counts packets the link to the home refused (queue
	// full, peer unknown); NoRoute slots whose topology had no route.
	SendErrors, NoRoute uint64
	// Offline counts slots that passed while the link to the home was
	// down (nothing was sent in them; Send's queue waited); HomeChanges
	// the moves to another home after a failure.
	Offline, HomeChanges uint64
	// Missed counts slots skipped because they came up more than
	// 100 ms after their due time (the process was stopped or the
	// machine suspended): the client does not send a burst of them.
	Missed uint64
	// LoopLatency is the mean round trip of the returned loops; LoopLoss
	// the fraction of loops lost among those due (sent + route delay +
	// grace) so far.
	LoopLatency time.Duration
	LoopLoss    float64
	// RecentLoopLatency and RecentLoopLoss are the same over the last
	// recentLoops (128) loops resolved (returned or given up), so they
	// follow the network's state as it changes.
	RecentLoopLatency time.Duration
	RecentLoopLoss    float64
}

// recentLoops is how many resolved loops the recent loop statistics cover.
const recentLoops = 128

// loopOutcome is what became of one loop.
type loopOutcome struct {
	rtt  time.Duration
	lost bool
}

// recordLoopLocked notes a resolved loop; c.mu is held.
func (c *Client) recordLoopLocked(o loopOutcome) {
	c.recent[c.recentN%recentLoops] = o
	c.recentN++
}

type sendReq struct {
	dest    Destination
	payload []byte
	done    chan sendResult
}

type sendResult struct {
	sent Sent
	err  error
}

type pendingLoop struct {
	sent, due time.Time
}

// Client is a Strata mix client: it keeps one connection to its home relay,
// sends on the Loopix payload, loop and drop streams through the strata,
// makes SURBs and opens the replies its home pushes. It is safe for
// concurrent use.
type Client struct {
	cfg    Config
	format *sphinx.Format
	host   *transport.Host
	store  *SURBStore
	log    *slog.Logger
	self   sphinx.NodeID
	m      *metrics
	queue  chan sendReq
	recv   chan Reply
	// held takes back the real packets whose slot found the link down
	// between their build and their due time; payload slots send them
	// before anything in queue.
	held chan sendReq

	home   atomic.Pointer[homeState]
	source atomic.Pointer[sourceBox]
	// linkUp is set while the home is connected and has accepted the
	// client's registration; slots send nothing while it is clear.
	linkUp atomic.Bool
	// homeLost is signalled by the transport when the home's last
	// connection closes.
	homeLost chan struct{}
	// homeMu serialises SetHome.
	homeMu sync.Mutex

	mu        sync.Mutex
	rng       *mrand.Rand
	loops     map[sphinx.SURBID]pendingLoop
	loopRTT   time.Duration // sum of returned loops' round trips
	recent    [recentLoops]loopOutcome
	recentN   int // outcomes recorded, ever
	lastEpoch uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type sourceBox struct{ s Source }

// homeState is the client's home: how to reach it, its id, and the secret
// the client's tokens at it derive from.
type homeState struct {
	info   transport.PeerInfo
	id     sphinx.NodeID
	secret HomeSecret
}

// Reconnection to the home: attempts spaced from reconnectMin doubling to
// reconnectMax, each bounded by reconnectTimeout; homeCheck is how often
// the client looks at its link when nothing signals a loss.
const (
	reconnectMin     = 100 * time.Millisecond
	reconnectMax     = 2 * time.Second
	reconnectTimeout = 5 * time.Second
	homeCheck        = 500 * time.Millisecond
	// DefaultHomeFailover is Config.HomeFailover's default.
	DefaultHomeFailover = 30 * time.Second
)

// New starts a client: it opens the SURB database, connects to the home
// relay and starts the Loopix streams. ctx bounds the start (the dial of
// the home); the client runs until Close.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Identity == nil || cfg.DataDir == "" || cfg.Topology == nil || cfg.Home.PublicKey == nil {
		return nil, errors.New("client: Identity, DataDir, Home and Topology are required")
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 256
	}
	if cfg.Receive <= 0 {
		cfg.Receive = 256
	}
	if cfg.HomeFailover <= 0 {
		cfg.HomeFailover = DefaultHomeFailover
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	top := cfg.Topology()
	if top == nil {
		return nil, errors.New("client: no topology")
	}
	rates := Rates{Payload: top.Params.LambdaP, Loop: top.Params.LambdaL, Drop: top.Params.LambdaD}
	if cfg.Rates != nil {
		rates = *cfg.Rates
	}
	var seed [32]byte
	rand.Read(seed[:])
	sched, err := NewScheduler(rates, seed, time.Now())
	if err != nil {
		return nil, err
	}
	format, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	store, err := OpenSURBStore(filepath.Join(cfg.DataDir, "surbs.db"))
	if err != nil {
		return nil, err
	}
	var rngSeed [32]byte
	rand.Read(rngSeed[:])
	c := &Client{
		cfg: cfg, format: format, store: store, log: log,
		m:     newMetrics(cfg.Registerer),
		queue: make(chan sendReq, cfg.SendQueue), recv: make(chan Reply, cfg.Receive),
		held: make(chan sendReq, readyPackets+2),
		rng:  mrand.New(mrand.NewChaCha8(rngSeed)), loops: map[sphinx.SURBID]pendingLoop{},
		lastEpoch: top.Epoch, homeLost: make(chan struct{}, 1),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// The host lives as long as the client, not as long as ctx.
	c.host, err = transport.New(c.ctx, transport.Config{
		Identity: cfg.Identity, PacketSize: format.Geometry().PacketSize(), NoListen: true,
		Handler: c.handle, Registerer: cfg.Registerer, Logger: log,
		Disconnected: func(id transport.NodeID) {
			if hs := c.home.Load(); hs != nil && sphinx.NodeID(id) == hs.id {
				c.linkUp.Store(false)
				select {
				case c.homeLost <- struct{}{}:
				default:
				}
			}
		},
	})
	if err != nil {
		c.cancel()
		store.Close()
		return nil, err
	}
	c.self = sphinx.NodeID(c.host.ID())
	if err := c.SetHome(ctx, cfg.Home); err != nil {
		c.cancel()
		c.host.Close()
		store.Close()
		return nil, err
	}
	// Slots' packets are built ahead and leave at their due times
	// (streams.go).
	ready := make(chan outgoing, readyPackets)
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		c.buildSlots(sched, ready)
	}()
	go func() {
		defer c.wg.Done()
		c.sendSlots(ready)
	}()
	go func() {
		defer c.wg.Done()
		c.keepHome()
	}()
	return c, nil
}

// ID returns the client's node id.
func (c *Client) ID() sphinx.NodeID { return c.self }

// Home returns the client's home relay.
func (c *Client) Home() sphinx.NodeID { return c.home.Load().id }

// SetHome makes relay home the client's home: the client connects to it,
// registers its secret there (RegisterProtocol), sends every packet
// through it from now on, and SURBs made from now on name it. It then
// leaves the old home: SURBs that name the old home are lost with it.
// Until the registration is accepted the client sends nothing. If the
// relay cannot be reached or refuses the registration, SetHome closes any
// connection it opened to it and the old home stays the home.
func (c *Client) SetHome(ctx context.Context, home transport.PeerInfo) error {
	c.homeMu.Lock()
	defer c.homeMu.Unlock()
	id := sphinx.NodeID(transport.NodeIDFromPublicKey(home.PublicKey))
	hs := &homeState{info: home, id: id, secret: DeriveHomeSecret(c.cfg.Identity, id)}
	old := c.home.Load()
	moving := old == nil || old.id != id
	wasUp := c.linkUp.Load()
	if moving {
		c.linkUp.Store(false)
	}
	if err := c.connectHome(ctx, hs); err != nil {
		if moving {
			// A relay that took the connection but not the registration
			// keeps no connection from the client: it would learn the
			// client's address and identity for nothing. The old home
			// is still the home.
			_ = c.host.Disconnect(transport.NodeID(id))
			c.host.RemovePeer(transport.NodeID(id))
			c.linkUp.Store(wasUp && old != nil && c.host.IsConnected(transport.NodeID(old.id)))
		}
		return err
	}
	c.home.Store(hs)
	c.linkUp.Store(true)
	if old == nil || old.id == id {
		return nil
	}
	// Leave the old home: it stops pushing once the connection is gone,
	// and the client has no other peer.
	if err := c.host.Disconnect(transport.NodeID(old.id)); err != nil {
		c.log.Debug("leaving the old home", "home", old.id, "err", err)
	}
	c.host.RemovePeer(transport.NodeID(old.id))
	return nil
}

// connectHome dials hs (Host.Connect bypasses the dial backoff a failed
// dial left behind, since the home coming back is what the client waits
// for) and registers the client's secret with it.
func (c *Client) connectHome(ctx context.Context, hs *homeState) error {
	to := transport.NodeID(hs.id)
	if err := c.host.AddPeer(hs.info); err != nil {
		return fmt.Errorf("client: home: %w", err)
	}
	if err := c.host.Connect(ctx, to); err != nil {
		return fmt.Errorf("client: connecting to home %v: %w", hs.id, err)
	}
	resp, err := c.host.Request(ctx, to, RegisterProtocol, EncodeRegister(hs.id, hs.secret))
	if err != nil {
		return fmt.Errorf("client: registering with home %v: %w", hs.id, err)
	}
	if !bytes.Equal(resp, registered) {
		return fmt.Errorf("client: registering with home %v: %w: answer %x", hs.id, ErrRegister, resp)
	}
	return nil
}

// PayloadSize is the number of message bytes one packet carries, the same
// for forward packets and SURB replies.
func (c *Client) PayloadSize() int { return c.format.Geometry().PayloadCapacity() - lengthPrefix }

// SetSource plugs a Source into the payload stream (nil removes it).
func (c *Client) SetSource(s Source) {
	if s == nil {
		c.source.Store(nil)
		return
	}
	c.source.Store(&sourceBox{s})
}

// Receive returns the channel of decrypted replies.
func (c *Client) Receive() <-chan Reply { return c.recv }

// ViaSURB addresses a reply to the creator of the encoded SURB s (made by
// NewSURB, or by sphinx.Format.NewSURB with the default geometry). The
// reply goes to the SURB's first hop and follows the path the SURB's
// creator chose; the sender learns nothing of it.
func ViaSURB(s []byte) (Destination, error) {
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		return Destination{}, err
	}
	return viaSURB(f, s)
}

// ViaSURB is the package's ViaSURB with the client's packet format.
func (c *Client) ViaSURB(s []byte) (Destination, error) { return viaSURB(c.format, s) }

func viaSURB(f *sphinx.Format, s []byte) (Destination, error) {
	surb, err := f.DecodeSURB(s)
	if err != nil {
		return Destination{}, fmt.Errorf("client: %w", err)
	}
	return Destination{surb: surb}, nil
}

// Send queues payload for the next payload-stream slot and waits until it
// leaves (or ctx ends). The packet is sent in a slot of the Poisson payload
// stream, in place of the cover packet that slot would otherwise carry.
func (c *Client) Send(ctx context.Context, d Destination, payload []byte) (Sent, error) {
	if len(payload) > c.PayloadSize() {
		return Sent{}, ErrTooLarge
	}
	req := sendReq{dest: d, payload: payload, done: make(chan sendResult, 1)}
	select {
	case c.queue <- req:
	case <-ctx.Done():
		return Sent{}, ctx.Err()
	case <-c.ctx.Done():
		return Sent{}, ErrClosed
	}
	select {
	case r := <-req.done:
		return r.sent, r.err
	case <-ctx.Done():
		// The packet may still leave; the caller stopped waiting.
		return Sent{}, ctx.Err()
	case <-c.ctx.Done():
		return Sent{}, ErrClosed
	}
}

// NewSURB makes a SURB through the current strata to this client's home.
// Its reply keys are in the SURB database, fsynced, before it is returned.
func (c *Client) NewSURB(ctx context.Context) (SURB, error) {
	top := c.cfg.Topology()
	if top == nil {
		return SURB{}, ErrNoRoute
	}
	hs := c.home.Load()
	path, err := c.path(top, homeHop(hs))
	if err != nil {
		return SURB{}, err
	}
	surb, keys, route, err := c.format.NewSURB(rand.Reader, path, hs.secret.Token(top.Epoch), c.delay(top))
	if err != nil {
		return SURB{}, err
	}
	if err := ctx.Err(); err != nil {
		return SURB{}, err
	}
	if err := c.store.Put(top.Epoch, keys); err != nil {
		return SURB{}, err
	}
	b, err := surb.MarshalBinary()
	if err != nil {
		return SURB{}, err
	}
	return SURB{Bytes: b, ID: keys.ID, Delay: route.Total, Epoch: top.Epoch}, nil
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	s := c.m.snapshot()
	c.mu.Lock()
	if s.LoopsReturned > 0 {
		s.LoopLatency = c.loopRTT / time.Duration(s.LoopsReturned)
	}
	var lost, back int
	var rtt time.Duration
	for _, o := range c.recent[:min(c.recentN, recentLoops)] {
		if o.lost {
			lost++
		} else {
			back++
			rtt += o.rtt
		}
	}
	c.mu.Unlock()
	if lost+back > 0 {
		s.RecentLoopLoss = float64(lost) / float64(lost+back)
	}
	if back > 0 {
		s.RecentLoopLatency = rtt / time.Duration(back)
	}
	if due := s.LoopsReturned + s.LoopsLost; due > 0 {
		s.LoopLoss = float64(s.LoopsLost) / float64(due)
	}
	return s
}

// Close stops the streams, closes the connection and the SURB database.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	err := c.host.Close()
	return errors.Join(err, c.store.Close())
}

// delay returns the network's delay policy.
func (c *Client) delay(top *pki.Topology) sphinx.DelayPolicy {
	return sphinx.DelayPolicy{Mean: top.Params.MeanDelay}
}

// homeHop returns the final hop of loops and SURBs: the home relay hs
// under its key of the topology's epoch.
func homeHop(hs *homeState) func(*pki.Topology) (sphinx.Hop, error) {
	return func(top *pki.Topology) (sphinx.Hop, error) {
		r, ok := top.Relay(hs.id)
		if !ok {
			return sphinx.Hop{}, ErrUnknownHome
		}
		return sphinx.Hop{ID: hs.id, Key: r.MixKey}, nil
	}
}

// path returns one relay per stratum, chosen uniformly over the valid
// routes of top, followed by the hop final returns.
func (c *Client) path(top *pki.Topology, final func(*pki.Topology) (sphinx.Hop, error)) ([]sphinx.Hop, error) {
	g := top.Graph()
	if g == nil {
		return nil, ErrNoRoute
	}
	last, err := final(top)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	route := g.RandomRoute(c.rng.IntN)
	c.mu.Unlock()
	path := make([]sphinx.Hop, 0, len(route)+1)
	for _, id := range route {
		r, ok := top.Relay(id)
		if !ok {
			return nil, ErrNoRoute
		}
		path = append(path, sphinx.Hop{ID: id, Key: r.MixKey})
	}
	return append(path, last), nil
}

// mailboxHop returns the final hop for mailbox node id.
func mailboxHop(id sphinx.NodeID) func(*pki.Topology) (sphinx.Hop, error) {
	return func(top *pki.Topology) (sphinx.Hop, error) {
		mb, ok := top.Mailbox(id)
		if !ok {
			return sphinx.Hop{}, fmt.Errorf("%w: mailbox %v is not in epoch %d", ErrNoRoute, id, top.Epoch)
		}
		return sphinx.Hop{ID: id, Key: mb.MixKey}, nil
	}
}

// coverHop returns the final hop of a drop cover packet: a random mailbox,
// where real forward packets end too, or a relay of the last stratum when
// the epoch has no mailbox.
func (c *Client) coverHop(top *pki.Topology) (sphinx.Hop, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(top.Mailboxes); n > 0 {
		mb := top.Mailboxes[c.rng.IntN(n)]
		return sphinx.Hop{ID: mb.ID, Key: mb.MixKey}, nil
	}
	var last []pki.Relay
	for _, r := range top.Relays {
		if r.Layer == int(top.Params.Layers)-1 {
			last = append(last, r)
		}
	}
	if n := len(last); n > 0 {
		r := last[c.rng.IntN(n)]
		return sphinx.Hop{ID: r.ID, Key: r.MixKey}, nil
	}
	return sphinx.Hop{}, ErrNoRoute
}

// pad returns payload preceded by its length and zero padded to the
// packet's capacity.
func (c *Client) pad(payload []byte) []byte {
	return Pad(c.format.Geometry().PayloadCapacity(), payload)
}

// Pad returns the packet message carrying payload: its length (2 bytes, big
// endian), payload, zeros up to capacity (Geometry.PayloadCapacity). Every
// packet a client sends, and every reply a node sends through a SURB, is
// laid out so; payload must be at most capacity − 2 bytes.
func Pad(capacity int, payload []byte) []byte {
	msg := make([]byte, capacity)
	binary.BigEndian.PutUint16(msg, uint16(len(payload)))
	copy(msg[lengthPrefix:], payload)
	return msg
}

// Unpad returns the payload of a packet message laid out by Pad; it aliases
// msg.
func Unpad(msg []byte) ([]byte, error) { return unpad(msg) }

// unpad undoes pad.
func unpad(msg []byte) ([]byte, error) {
	if len(msg) < lengthPrefix {
		return nil, errors.New("client: short payload")
	}
	n := int(binary.BigEndian.Uint16(msg))
	if n > len(msg)-lengthPrefix {
		return nil, errors.New("client: payload length out of range")
	}
	return msg[lengthPrefix : lengthPrefix+n], nil
}
