package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
)

// View is what a relay's cover traffic and its routes (Routes) need to know
// of an epoch: its strata, its mailbox nodes, the mix keys of its nodes,
// the delay policy and the loop rate λM.
type View struct {
	Epoch uint64
	Graph *pki.Graph
	// Mailboxes are the epoch's mailbox nodes: the last stratum forwards
	// to them, the first takes their SURB replies.
	Mailboxes []sphinx.NodeID
	MixKeys   map[sphinx.NodeID]sphinx.PublicKey
	Delay     sphinx.DelayPolicy
	LoopRate  float64 // loops per second
}

type pendingLoop struct{ sent, deadline time.Time }

// errNoStrata means the epoch has no strata to send a loop through.
var errNoStrata = errors.New("relay: no strata in this epoch")

// loopGrace is how long after its expected arrival a loop counts as lost.
const loopGrace = 2 * time.Second

// Cover sends the relay's loop cover traffic: Poisson(λM) packets through
// one relay of each stratum and back to the relay itself (a Loop final
// command), and counts the loops that do not come back in time as lost.
// Under enforced routes (Routes) a loop comes back only to a relay or
// mailbox node of the view's epoch: the last stratum forwards to no one
// else.
type Cover struct {
	format *sphinx.Format
	self   sphinx.Hop
	view   func() *View
	send   func(ctx context.Context, to sphinx.NodeID, pkt []byte) error
	rng    *mrand.Rand
	noWait context.Context // always done

	mu      sync.Mutex
	pending map[sphinx.LoopID]pendingLoop

	sent, returned, lost prometheus.Counter
	latency              prometheus.Histogram
}

// NewCover returns a loop cover sender for the relay self. view returns the
// current epoch's view; send is the relay's link (Link.Send), called with
// a context that is already done: it must not wait for the peer.
func NewCover(f *sphinx.Format, self sphinx.Hop, view func() *View, send func(ctx context.Context, to sphinx.NodeID, pkt []byte) error, reg prometheus.Registerer) (*Cover, error) {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	noWait, stop := context.WithCancel(context.Background())
	stop()
	c := &Cover{
		format: f, self: self, view: view, send: send, noWait: noWait,
		rng:      mrand.New(mrand.NewChaCha8(seed)),
		pending:  map[sphinx.LoopID]pendingLoop{},
		sent:     prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_loops_sent_total", Help: "Loop cover packets sent."}),
		returned: prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_loops_returned_total", Help: "Loop cover packets that came back."}),
		lost:     prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_relay_loops_lost_total", Help: "Loop cover packets that did not come back in time."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "strata_relay_loop_latency_seconds", Help: "Round trip of loop cover packets.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{c.sent, c.returned, c.lost, c.latency} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("relay: register cover metrics: %w", err)
			}
		}
	}
	return c, nil
}

// Run sends loops until ctx ends.
func (c *Cover) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	next := time.Now()
	for {
		v := c.view()
		if v == nil || v.LoopRate <= 0 {
			next = time.Now().Add(time.Second)
		} else {
			next = next.Add(time.Duration(c.rng.ExpFloat64() / v.LoopRate * float64(time.Second)))
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		c.expire(time.Now())
		if v != nil && v.LoopRate > 0 && v.Graph != nil {
			if err := c.sendLoop(v); err != nil && ctx.Err() == nil {
				c.lost.Inc()
			}
		}
	}
}

// sendLoop builds one loop over a random route of v and sends it, without
// waiting: a full first hop loses the loop (counted once, as lost).
func (c *Cover) sendLoop(v *View) error {
	if v.Graph == nil {
		return errNoStrata
	}
	route := v.Graph.RandomRoute(c.rng.IntN)
	path := make([]sphinx.Hop, 0, len(route)+1)
	for _, id := range route {
		key, ok := v.MixKeys[id]
		if !ok {
			return fmt.Errorf("relay: no mix key for %v", id)
		}
		path = append(path, sphinx.Hop{ID: id, Key: key})
	}
	// The loop ends at this relay under its key of the view's epoch (the
	// key given to NewCover when the view does not list this relay).
	self := c.self
	if key, ok := v.MixKeys[self.ID]; ok {
		self.Key = key
	}
	path = append(path, self)
	var id sphinx.LoopID
	rand.Read(id[:])
	pkt, r, err := c.format.NewPacket(rand.Reader, path, sphinx.LoopBack(id), v.Delay, nil)
	if err != nil {
		return err
	}
	now := time.Now()
	c.mu.Lock()
	c.pending[id] = pendingLoop{sent: now, deadline: now.Add(r.Total + loopGrace)}
	c.mu.Unlock()
	c.sent.Inc()
	if err := c.send(c.noWait, path[0].ID, pkt); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return err
	}
	return nil
}

// Returned records that loop id came back; Relay's Local.Loop calls it.
func (c *Cover) Returned(id sphinx.LoopID, _ []byte) {
	c.mu.Lock()
	p, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		c.returned.Inc()
		c.latency.Observe(time.Since(p.sent).Seconds())
	}
}

// expire counts the loops overdue at now as lost.
func (c *Cover) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, p := range c.pending {
		if now.After(p.deadline) {
			delete(c.pending, id)
			c.lost.Inc()
		}
	}
}
