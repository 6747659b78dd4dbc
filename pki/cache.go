package pki

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// TopologyCache keeps a client's verified topologies: the current epoch's
// and, once it freezes (Params.TopologyLead blocks before the epoch ends),
// the next one's, so the client switches at the epoch change without a
// gap. Refresh is cheap when nothing changed: one verified epoch query.
// A refresh that fails changes nothing: the cache keeps its last good
// epoch and topologies. Failures go to the verifier's logger as a warning
// once per kind of error (ErrStaleAnswer, ErrFork, ...) until a refresh
// succeeds again.
type TopologyCache struct {
	v *Verifier

	mu        sync.RWMutex
	epoch     EpochInfo
	cur, next *Topology
	failing   string // kind of the last refresh's error; "" after a success
}

// NewTopologyCache returns an empty cache reading through v.
func NewTopologyCache(v *Verifier) *TopologyCache { return &TopologyCache{v: v} }

// Current returns the current epoch's topology, or nil before the first
// successful Refresh.
func (c *TopologyCache) Current() *Topology {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cur
}

// Next returns the next epoch's topology once it has frozen, else nil.
func (c *TopologyCache) Next() *Topology {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.next
}

// Epoch returns the chain's epoch as of the last Refresh.
func (c *TopologyCache) Epoch() EpochInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// Refresh reads the chain's epoch and fetches what the cache lacks. In
// epoch 0, whose topology grows as nodes are admitted, it refetches the
// current topology every time.
func (c *TopologyCache) Refresh(ctx context.Context) error {
	err := c.refresh(ctx)
	if ctx.Err() != nil {
		return err
	}
	kind := errorKind(err)
	c.mu.Lock()
	was := c.failing
	c.failing = kind
	c.mu.Unlock()
	switch {
	case err != nil && kind != was:
		c.v.cfg.Logger.Warn("pki: topology refresh failed; keeping the last good topology", "err", err)
	case err == nil && was != "":
		c.v.cfg.Logger.Info("pki: topology refresh works again")
	}
	return err
}

// errorKind names the class of a refresh error: its sentinel, or its
// text without digits (heights and times change at every try).
func errorKind(err error) string {
	if err == nil {
		return ""
	}
	for _, s := range []error{ErrTrustExpired, ErrStaleAnswer, ErrFork, ErrWrongChain, ErrUnverified, ErrNotFound, ErrNoEndpoint} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, err.Error())
}

func (c *TopologyCache) refresh(ctx context.Context) error {
	ei, err := c.v.Epoch(ctx)
	if err != nil {
		return err
	}
	c.mu.RLock()
	cur, next := c.cur, c.next
	c.mu.RUnlock()
	if cur == nil || cur.Epoch != ei.Epoch || ei.Epoch == 0 {
		if next != nil && next.Epoch == ei.Epoch {
			cur = next
		} else if cur, err = c.v.Topology(ctx, ei.Epoch); err != nil {
			return err
		}
	}
	if next == nil || next.Epoch != ei.Epoch+1 {
		next, err = c.v.Topology(ctx, ei.Epoch+1)
		if errors.Is(err, ErrNotFound) {
			next, err = nil, nil
		}
		if err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.epoch, c.cur, c.next = ei, cur, next
	c.mu.Unlock()
	return nil
}

// Run refreshes every interval until ctx ends; failures are retried at the
// next tick, keeping what the cache holds.
func (c *TopologyCache) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = c.Refresh(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
