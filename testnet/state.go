package testnet

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/strata-mix/strata/pki"
)

// track registers a message that left a client.
func (t *Testnet) track(out *outgoing) {
	t.stats.Sent()
	t.mu.Lock()
	t.inFlight[out.ID] = out
	t.mu.Unlock()
}

// delivered records that message id reached its recipient after latency.
// A message delivered twice (a put repeated after a lost answer) counts
// once.
func (t *Testnet) delivered(id string, latency time.Duration) {
	t.mu.Lock()
	out := t.inFlight[id]
	delete(t.inFlight, id)
	t.mu.Unlock()
	if out == nil {
		return
	}
	t.stats.Delivered(latency)
	out.from.mu.Lock()
	out.Status = "delivered"
	out.Latency = latency.Seconds()
	out.from.mu.Unlock()
	out.ackOnce.Do(func() { close(out.acked) })
}

// lost records that the sender gave up on message id.
func (t *Testnet) lost(id string) {
	t.mu.Lock()
	_, ok := t.inFlight[id]
	delete(t.inFlight, id)
	t.mu.Unlock()
	if ok {
		t.stats.Lost()
	}
}

// chatter makes from send a message to to every MessageEvery, with
// exponential gaps (so the demo traffic is Poisson too).
func (t *Testnet) chatter(ctx context.Context, from, to *demoClient) {
	n := 0
	for {
		gap := time.Duration(expRand() * float64(t.cfg.MessageEvery))
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		n++
		if _, err := from.send(to, fmt.Sprintf("message %d from %s", n, from.name)); err != nil && ctx.Err() == nil {
			t.cfg.Logger.Warn("demo message", "err", err)
		}
	}
}

// Send sends text from demo client from to demo client to (Network).
func (t *Testnet) Send(_ context.Context, from, to int, text string) (string, error) {
	if from < 0 || to < 0 || from >= len(t.clients) || to >= len(t.clients) {
		return "", errors.New("no such client")
	}
	if from == to {
		return "", errors.New("sender and recipient are the same client")
	}
	out, err := t.clients[from].send(t.clients[to], text)
	if err != nil {
		return "", err
	}
	return out.ID, nil
}

// scrapeLoop reads every node's metrics once a second for the dashboard.
func (t *Testnet) scrapeLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for _, p := range t.nodes {
			s, err := scrape(ctx, t.http, p.metrics)
			now := time.Now()
			p.mu.Lock()
			if err == nil {
				if !p.lastAt.IsZero() {
					p.rate = (s.PacketsIn - p.last.PacketsIn) / now.Sub(p.lastAt).Seconds()
				}
				p.last, p.lastAt = s, now
			}
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// State returns a snapshot for the dashboard (Network).
func (t *Testnet) State() State {
	s := State{ChainID: t.validator.ChainID(), Height: t.validator.Height(), Uptime: time.Since(t.start).Seconds()}
	s.Messages, s.Latency = t.stats.Snapshot()
	top := t.cache.Current()
	byID := map[string]*nodeProc{}
	for _, p := range t.nodes {
		byID[hex.EncodeToString(p.id[:])] = p
	}
	nodeState := func(n pki.NodeInfo, layer int) NodeState {
		id := hex.EncodeToString(n.ID[:])
		ns := NodeState{ID: id, Name: id[:8], Layer: layer}
		if p := byID[id]; p != nil {
			p.mu.Lock()
			ns.Name, ns.Metrics, ns.Up = p.name, p.metrics, p.up
			ns.PacketsIn, ns.PacketsOut = uint64(p.last.PacketsIn), uint64(p.last.PacketsOut)
			ns.ReplayDrops, ns.RateIn = uint64(p.last.ReplayDrops), p.rate
			p.mu.Unlock()
		}
		return ns
	}
	if top != nil {
		s.Epoch = top.Epoch
		for _, r := range top.Relays {
			for len(s.Layers) <= r.Layer {
				s.Layers = append(s.Layers, nil)
			}
			s.Layers[r.Layer] = append(s.Layers[r.Layer], nodeState(r.NodeInfo, r.Layer))
			for _, next := range r.Next {
				s.Edges = append(s.Edges, Edge{From: hex.EncodeToString(r.ID[:]), To: hex.EncodeToString(next[:])})
			}
		}
		for _, m := range top.Mailboxes {
			s.Mailboxes = append(s.Mailboxes, nodeState(m, -1))
		}
	}
	for _, c := range t.clients {
		s.Clients = append(s.Clients, c.state())
	}
	return s
}

// nodeName returns the testnet's name of node id.
func (t *Testnet) nodeName(id [32]byte) string {
	for _, p := range t.nodes {
		if p.id == id {
			return p.name
		}
	}
	return hex.EncodeToString(id[:4])
}
