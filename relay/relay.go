package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/strata-mix/strata/sphinx"
)

// Link sends packets to other nodes. Send must copy pkt and return at once,
// never waiting for the peer: nothing on a relay's packet path may wait on
// one successor, or a successor that stopped reading (or crashed) would
// stall every other packet. When the packet cannot be queued it returns an
// error wrapping ErrLinkFull (the peer's queue is full) or ErrLinkDown (the
// peer is unreachable), or any other error; the relay drops the packet and
// counts it by that reason ("peer_full", "peer_down", "send"). The relay
// passes a context that is already done, so a Link built on a waiting send
// (transport.Host.Send) tries once and fails at once.
type Link interface {
	Send(ctx context.Context, to sphinx.NodeID, pkt []byte) error
}

// Link errors; a Link wraps them so the relay can tell why a packet was
// not sent (package relay does not import the transport).
var (
	// ErrLinkFull means the peer's send queue is full: it is slow, stuck or
	// being redialled.
	ErrLinkFull = errors.New("relay: link to peer full")
	// ErrLinkDown means the peer has been unreachable for a while.
	ErrLinkDown = errors.New("relay: peer unreachable")
)

// LinkFunc adapts a function to Link.
type LinkFunc func(ctx context.Context, to sphinx.NodeID, pkt []byte) error

// Send calls f.
func (f LinkFunc) Send(ctx context.Context, to sphinx.NodeID, pkt []byte) error {
	return f(ctx, to, pkt)
}

// Local receives the packets that end at this node: DeliverClient (this
// relay is the client's home) and Loop (this relay's own cover loops).
// payload aliases a buffer valid only during the call. Nil methods' packets
// are dropped and counted.
type Local struct {
	Client func(token sphinx.DeliveryToken, id sphinx.SURBID, payload []byte)
	Loop   func(id sphinx.LoopID, payload []byte)
	// Mailbox receives DeliverMailbox packets: set on a mailbox node, whose
	// receive path is a relay pipeline. It must not block (copy payload
	// and queue it).
	Mailbox func(payload []byte)
}

// Config configures a Relay. Format, Keys, Link and Replay are required.
type Config struct {
	Format *sphinx.Format
	Keys   *Keyring
	// Delay is the network's per-hop delay policy.
	Delay sphinx.DelayPolicy
	Link  Link
	// Replay is the relay's replay database; the relay's replay stage is
	// its only user while the relay runs.
	Replay *ReplayDB
	// SchedulerCapacity is how many delayed packets the relay holds;
	// default DefaultSchedulerCapacity.
	SchedulerCapacity int
	Local             Local
	// NoForward drops Forward packets (counted as not_relay): a mailbox
	// node is a final hop, never a mix.
	NoForward bool
	// Workers is the number of unwrap goroutines; default GOMAXPROCS.
	Workers int
	// InboundQueue is the number of received packets waiting for a
	// worker; a full queue pushes back on the sending peers. One peer may
	// have InboundQueue/8 packets between HandlePacket and dispatch at
	// once, so a peer that floods the relay cannot fill the queue. The
	// packets the node hands itself (Inject) have a queue of the same
	// size of their own. Default 1024.
	InboundQueue int
	// Routes, if set, enforces the network's restricted routes: a packet
	// from a node that may not send to this one is dropped before it is
	// unwrapped (reason "route_from"), one whose sender or next hop is off
	// its epoch's routes after (reason "route_from" or "route"). Nil: no
	// checks, for tests of the pipeline alone; package node always sets it
	// (a *Routes).
	Routes     RoutePolicy
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Relay is a mix relay: it unwraps the packets it receives, drops replays,
// holds each packet for its delay and forwards it. Its pipeline is
// receive.go → unwrap.go → replay.go → schedule.go → forward.go.
type Relay struct {
	cfg   Config
	sched *Scheduler
	in    chan inbound
	// local holds the packets this node hands itself (Inject): a queue
	// of their own, which the workers serve first, so that peers filling
	// in cannot make the relay refuse its own loops and its home
	// clients' packets.
	local  chan inbound
	checks chan checked
	// slots are the peers' shares of the pipeline (receive.go).
	slotMu sync.RWMutex
	slots  map[sphinx.NodeID]chan struct{}
	rotate chan uint64
	// commits carries durable commits to dispatchLoop; freeCommits
	// recycles them.
	commits, freeCommits chan *commit
	bufs                 sync.Pool
	m                    *metrics
	log                  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	noWait context.Context // always done: sends that must not wait
	wg     sync.WaitGroup
	once   sync.Once
}

// New builds a relay and starts its workers; Close stops them.
func New(cfg Config) (*Relay, error) {
	if cfg.Format == nil || cfg.Keys == nil || cfg.Link == nil || cfg.Replay == nil {
		return nil, errors.New("relay: config needs Format, Keys, Link and Replay")
	}
	if err := cfg.Delay.Validate(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.InboundQueue <= 0 {
		cfg.InboundQueue = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	size := cfg.Format.Geometry().PacketSize()
	r := &Relay{cfg: cfg, in: make(chan inbound, cfg.InboundQueue), local: make(chan inbound, cfg.InboundQueue), slots: map[sphinx.NodeID]chan struct{}{}, checks: make(chan checked, cfg.InboundQueue), rotate: make(chan uint64, 1), m: m, log: cfg.Logger}
	r.bufs.New = func() any { b := make([]byte, size); return &b }
	r.commits, r.freeCommits = make(chan *commit, replayCommits), make(chan *commit, replayCommits)
	for range replayCommits {
		r.freeCommits <- &commit{items: make([]checked, 0, maxReplayBatch), tags: make([]Tag, 0, maxReplayBatch)}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	noWait, stop := context.WithCancel(context.Background())
	stop()
	r.noWait = noWait
	if r.sched, err = NewScheduler(cfg.SchedulerCapacity, r.forward, cfg.Registerer); err != nil {
		return nil, fmt.Errorf("relay: scheduler: %w", err)
	}
	for range cfg.Workers {
		r.wg.Go(r.unwrapLoop)
	}
	r.wg.Go(r.replayLoop)
	r.wg.Go(r.dispatchLoop)
	return r, nil
}

// Close stops the relay. Packets still queued or held are dropped.
func (r *Relay) Close() error {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
		for _, b := range r.sched.Close() {
			r.putBuf(b)
		}
	})
	return nil
}

// SetEpoch installs the keys of a new key epoch (current first, then the
// previous one for its grace period) and lets the replay database drop the
// tags of epochs older than the previous one.
func (r *Relay) SetEpoch(current uint64, keys ...EpochKey) error {
	if err := r.cfg.Keys.Set(current, keys...); err != nil {
		return err
	}
	select {
	case r.rotate <- current:
	case <-r.ctx.Done():
	}
	return nil
}

func (r *Relay) getBuf() *[]byte  { return r.bufs.Get().(*[]byte) }
func (r *Relay) putBuf(b *[]byte) { r.bufs.Put(b) }
