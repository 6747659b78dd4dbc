package client

import (
	"context"
	"errors"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// keepHome keeps the client's link to its home up until the client closes:
// when the home's connection drops (the transport's Disconnected hook, or
// a periodic look) it redials and registers again, with a short capped
// backoff, so the client sends again within seconds of the home coming
// back; a home that leaves the topology, or stays unreachable longer than
// Config.HomeFailover, is replaced by another relay of the topology.
func (c *Client) keepHome() {
	tick := time.NewTicker(homeCheck)
	defer tick.Stop()
	wait := reconnectMin
	var downSince time.Time
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.homeLost:
		case <-tick.C:
		}
		hs := c.home.Load()
		top := c.cfg.Topology()
		listed := top == nil || top.Graph() == nil
		if !listed {
			_, listed = top.Relay(hs.id)
		}
		if listed && c.linkUp.Load() && c.host.IsConnected(transport.NodeID(hs.id)) {
			downSince, wait = time.Time{}, reconnectMin
			continue
		}
		c.linkUp.Store(false)
		now := time.Now()
		if downSince.IsZero() {
			downSince = now
		}
		var err error
		if !listed || now.Sub(downSince) > c.cfg.HomeFailover {
			err = c.failover(hs.id, top)
		} else {
			err = c.reconnect(hs)
		}
		if err == nil {
			downSince, wait = time.Time{}, reconnectMin
			continue
		}
		c.log.Debug("home link", "home", hs.id, "down", now.Sub(downSince), "err", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, reconnectMax)
	}
}

// reconnect dials the home again and registers, unless SetHome has moved
// the client meanwhile.
func (c *Client) reconnect(hs *homeState) error {
	c.homeMu.Lock()
	defer c.homeMu.Unlock()
	if c.home.Load() != hs {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, reconnectTimeout)
	defer cancel()
	if err := c.connectHome(ctx, hs); err != nil {
		return err
	}
	c.linkUp.Store(true)
	c.log.Info("home link up again", "home", hs.id)
	return nil
}

// errNoOtherHome means the topology lists no relay but the failed home.
var errNoOtherHome = errors.New("client: no other relay to move to")

// failover moves the client to a relay of top other than failed, chosen
// uniformly at random.
func (c *Client) failover(failed sphinx.NodeID, top *pki.Topology) error {
	if top == nil {
		return errNoOtherHome
	}
	var others []pki.Relay
	for _, r := range top.Relays {
		if r.ID != failed {
			others = append(others, r)
		}
	}
	if len(others) == 0 {
		return errNoOtherHome
	}
	c.mu.Lock()
	r := others[c.rng.IntN(len(others))]
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, reconnectTimeout)
	defer cancel()
	if err := c.SetHome(ctx, transport.PeerInfo{PublicKey: r.IdentityKey[:], Addrs: r.Addrs}); err != nil {
		return err
	}
	c.m.homeChanges.Inc()
	c.log.Warn("moved to another home", "from", failed, "to", r.ID)
	return nil
}
