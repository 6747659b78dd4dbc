package client

import (
	"crypto/rand"
	"errors"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// loopGrace is how long after its expected return a loop counts as lost.
const loopGrace = 2 * time.Second

// slot sends the packet of one Loopix slot: for the payload stream a
// queued packet if there is one, else the Source's, else cover; a loop for
// the loop stream; drop cover for the drop stream. Every packet has the
// same size and leaves at the slot's time, whatever it carries.
func (c *Client) slot(s Slot) {
	top := c.cfg.Topology()
	if top == nil {
		return
	}
	c.epochChange(top)
	c.expireLoops(s.Due)
	real := false
	switch s.Stream {
	case PayloadStream:
		real = c.sendPayload(top, s.Due)
	case LoopStream:
		c.sendLoop(top)
	case DropStream:
		c.sendCover(top)
	}
	if c.cfg.trace != nil {
		c.cfg.trace(s, real)
	}
}

// sendPayload fills a payload slot: the oldest packet Send queued, else the
// Source's, else cover. A real packet that cannot be built (no route, a
// bad SURB) gives its slot to cover, so the slot is never empty on the
// wire. It reports whether the packet was real.
func (c *Client) sendPayload(top *pki.Topology, due time.Time) bool {
	select {
	case req := <-c.queue:
		sent, err := c.sendReal(top, req.dest, req.payload)
		req.done <- sendResult{sent, err}
		if err == nil {
			return true
		}
		c.sendCover(top)
		return false
	default:
	}
	if box := c.source.Load(); box != nil {
		if d, p, ok := box.s.Next(due); ok {
			if _, err := c.sendReal(top, d, p); err == nil {
				return true
			} else {
				c.log.Debug("source packet not sent", "err", err)
			}
		}
	}
	c.sendCover(top)
	return false
}

// epochChange expires the SURB keys of dead epochs when the topology moves
// to a new epoch: SURBs live as long as the keys they were made under.
func (c *Client) epochChange(top *pki.Topology) {
	c.mu.Lock()
	changed := top.Epoch != c.lastEpoch
	c.lastEpoch = top.Epoch
	fresh := top != c.lastTop
	c.lastTop = top
	c.mu.Unlock()
	if fresh {
		c.addFirstHops(top)
	}
	if changed && top.Epoch > 0 {
		if n, err := c.store.Expire(top.Epoch - 1); err != nil {
			c.log.Warn("expiring SURBs", "err", err)
		} else if n > 0 {
			c.log.Debug("SURBs expired", "n", n, "epoch", top.Epoch)
		}
	}
}

// addFirstHops makes the relays of the first stratum, where every packet
// the client sends enters, reachable through the transport.
func (c *Client) addFirstHops(top *pki.Topology) {
	for _, r := range top.Relays {
		if r.Layer != 0 {
			continue
		}
		if err := c.host.AddPeer(transport.PeerInfo{PublicKey: r.IdentityKey[:], Addrs: r.Addrs}); err != nil {
			c.log.Warn("first-hop relay rejected", "relay", r.ID, "err", err)
		}
	}
}

// sendReal sends a real packet.
func (c *Client) sendReal(top *pki.Topology, d Destination, payload []byte) (Sent, error) {
	if len(payload) > c.PayloadSize() {
		return Sent{}, ErrTooLarge
	}
	now := time.Now()
	if d.surb != nil {
		pkt, err := c.format.NewReply(d.surb, c.pad(payload))
		if err != nil {
			return Sent{}, err
		}
		if err := c.transmit(d.surb.FirstHop, pkt); err != nil {
			return Sent{}, err
		}
		c.m.real.Inc()
		return Sent{Route: []sphinx.NodeID{d.surb.FirstHop}}, nil
	}
	path, err := c.path(top, mailboxHop(d.mailbox))
	if err != nil {
		c.m.noRoute.Inc()
		return Sent{}, err
	}
	pkt, route, err := c.format.NewPacket(rand.Reader, path, sphinx.DeliverToMailbox(), c.delay(top), c.pad(payload))
	if err != nil {
		return Sent{}, err
	}
	if err := c.transmit(path[0].ID, pkt); err != nil {
		return Sent{}, err
	}
	c.m.real.Inc()
	ids := make([]sphinx.NodeID, len(path))
	for i, h := range path {
		ids[i] = h.ID
	}
	return Sent{Expected: now.Add(route.Total), Route: ids}, nil
}

// sendCover sends a drop cover packet through the strata to a random
// mailbox.
func (c *Client) sendCover(top *pki.Topology) {
	path, err := c.path(top, c.coverHop)
	if err != nil {
		c.m.noRoute.Inc()
		return
	}
	pkt, _, err := c.format.NewPacket(rand.Reader, path, sphinx.DropCover(), c.delay(top), nil)
	if err != nil {
		c.log.Warn("cover packet", "err", err)
		return
	}
	if c.transmit(path[0].ID, pkt) == nil {
		c.m.cover.Inc()
	}
}

// sendLoop sends a loop through the strata back to this client's home,
// which pushes it back down the client's connection.
func (c *Client) sendLoop(top *pki.Topology) {
	path, err := c.path(top, c.homeHop)
	if err != nil {
		c.m.noRoute.Inc()
		return
	}
	var id sphinx.SURBID
	rand.Read(id[:])
	final := sphinx.DeliverToClient(HomeToken(c.self, c.Home(), top.Epoch), id)
	pkt, route, err := c.format.NewPacket(rand.Reader, path, final, c.delay(top), nil)
	if err != nil {
		c.log.Warn("loop packet", "err", err)
		return
	}
	now := time.Now()
	c.mu.Lock()
	c.loops[id] = pendingLoop{sent: now, due: now.Add(route.Total + loopGrace)}
	c.mu.Unlock()
	if err := c.transmit(path[0].ID, pkt); err != nil {
		c.mu.Lock()
		delete(c.loops, id)
		c.mu.Unlock()
		return
	}
	c.m.loops.Inc()
}

// expireLoops counts the loops overdue at now as lost.
func (c *Client) expireLoops(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, l := range c.loops {
		if now.After(l.due) {
			delete(c.loops, id)
			c.recordLoopLocked(loopOutcome{lost: true})
			c.m.loopsLost.Inc()
		}
	}
}

// transmit hands pkt to the link to the first hop without waiting: a slot
// that cannot go out now is lost like a packet on a congested link, and
// the schedule does not slip.
func (c *Client) transmit(to sphinx.NodeID, pkt []byte) error {
	if err := c.host.TrySend(transport.NodeID(to), pkt); err != nil {
		c.m.sendErrors.Inc()
		c.log.Debug("send", "to", to, "err", err)
		return err
	}
	return nil
}

// handle takes a frame pushed by the home relay: a returning loop or a
// reply to one of the client's SURBs.
func (c *Client) handle(from transport.NodeID, frame []byte) {
	home := c.home.Load()
	if home == nil || from != transport.NodeIDFromPublicKey(home.PublicKey) {
		c.m.framesRejected.Inc()
		return
	}
	id, payload, err := ParsePush(c.format.Geometry(), frame)
	if err != nil {
		c.m.framesRejected.Inc()
		c.log.Debug("frame from home rejected", "err", err)
		return
	}
	now := time.Now()
	c.mu.Lock()
	l, isLoop := c.loops[id]
	if isLoop {
		delete(c.loops, id)
		c.loopRTT += now.Sub(l.sent)
		c.recordLoopLocked(loopOutcome{rtt: now.Sub(l.sent)})
	}
	c.mu.Unlock()
	if isLoop {
		c.m.loopsReturned.Inc()
		c.m.loopSeconds.Observe(now.Sub(l.sent).Seconds())
		return
	}
	keys, _, err := c.store.Take(id)
	if err != nil {
		if errors.Is(err, ErrUnknownSURB) {
			c.m.repliesUnknown.Inc()
		} else {
			c.log.Warn("SURB database", "err", err)
		}
		return
	}
	buf := make([]byte, len(payload))
	copy(buf, payload)
	msg, err := c.format.OpenReply(keys, buf)
	if err != nil {
		c.m.repliesBad.Inc()
		return
	}
	body, err := unpad(msg)
	if err != nil {
		c.m.repliesBad.Inc()
		return
	}
	c.m.replies.Inc()
	select {
	case c.recv <- Reply{SURB: id, Payload: body, Arrived: now}:
	case <-c.ctx.Done():
	}
}
