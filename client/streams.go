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
// same size and leaves at the slot's time, whatever it carries. While the
// link to the home is down the slot sends nothing and takes nothing from
// Send's queue: the packets wait for the link.
func (c *Client) slot(s Slot) {
	top := c.cfg.Topology()
	if top == nil {
		return
	}
	c.epochChange(top)
	c.expireLoops(s.Due)
	if !c.linkUp.Load() {
		c.m.offline.Inc()
		return
	}
	real := false
	var wire time.Time
	switch s.Stream {
	case PayloadStream:
		real, wire = c.sendPayload(top, s.Due)
	case LoopStream:
		wire = c.sendLoop(top)
	case DropStream:
		wire = c.sendCover(top)
	}
	if c.cfg.trace != nil {
		c.cfg.trace(s, real, wire)
	}
}

// sendPayload fills a payload slot: the oldest packet Send queued, else the
// Source's, else cover. A real packet that cannot be built (no route, a
// bad SURB) gives its slot to cover, so the slot is never empty on the
// wire. It reports whether the packet was real, and when the link took it.
func (c *Client) sendPayload(top *pki.Topology, due time.Time) (bool, time.Time) {
	select {
	case req := <-c.queue:
		sent, wire, err := c.sendReal(top, req.dest, req.payload)
		req.done <- sendResult{sent, err}
		if err == nil {
			return true, wire
		}
		return false, c.sendCover(top)
	default:
	}
	if box := c.source.Load(); box != nil {
		if d, p, ok := box.s.Next(due); ok {
			if _, wire, err := c.sendReal(top, d, p); err == nil {
				return true, wire
			} else {
				c.log.Debug("source packet not sent", "err", err)
			}
		}
	}
	return false, c.sendCover(top)
}

// epochChange expires the SURB keys of dead epochs when the topology moves
// to a new epoch: SURBs live as long as the keys they were made under.
func (c *Client) epochChange(top *pki.Topology) {
	c.mu.Lock()
	changed := top.Epoch != c.lastEpoch
	c.lastEpoch = top.Epoch
	c.mu.Unlock()
	if changed && top.Epoch > 0 {
		if n, err := c.store.Expire(top.Epoch - 1); err != nil {
			c.log.Warn("expiring SURBs", "err", err)
		} else if n > 0 {
			c.log.Debug("SURBs expired", "n", n, "epoch", top.Epoch)
		}
	}
}

// sendReal sends a real packet; it returns when the link took it.
func (c *Client) sendReal(top *pki.Topology, d Destination, payload []byte) (Sent, time.Time, error) {
	if len(payload) > c.PayloadSize() {
		return Sent{}, time.Time{}, ErrTooLarge
	}
	if d.surb != nil {
		pkt, err := c.format.NewReply(d.surb, c.pad(payload))
		if err != nil {
			return Sent{}, time.Time{}, err
		}
		wire, err := c.transmit(d.surb.FirstHop, pkt)
		if err != nil {
			return Sent{}, time.Time{}, err
		}
		c.m.real.Inc()
		return Sent{Route: []sphinx.NodeID{d.surb.FirstHop}}, wire, nil
	}
	path, err := c.path(top, mailboxHop(d.mailbox))
	if err != nil {
		c.m.noRoute.Inc()
		return Sent{}, time.Time{}, err
	}
	pkt, route, err := c.format.NewPacket(rand.Reader, path, sphinx.DeliverToMailbox(), c.delay(top), c.pad(payload))
	if err != nil {
		return Sent{}, time.Time{}, err
	}
	wire, err := c.transmit(path[0].ID, pkt)
	if err != nil {
		return Sent{}, time.Time{}, err
	}
	c.m.real.Inc()
	ids := make([]sphinx.NodeID, len(path))
	for i, h := range path {
		ids[i] = h.ID
	}
	return Sent{Expected: wire.Add(route.Total), Route: ids}, wire, nil
}

// sendCover sends a drop cover packet through the strata to a random
// mailbox; it returns when the link took it (zero if it did not).
func (c *Client) sendCover(top *pki.Topology) time.Time {
	path, err := c.path(top, c.coverHop)
	if err != nil {
		c.m.noRoute.Inc()
		return time.Time{}
	}
	pkt, _, err := c.format.NewPacket(rand.Reader, path, sphinx.DropCover(), c.delay(top), nil)
	if err != nil {
		c.log.Warn("cover packet", "err", err)
		return time.Time{}
	}
	wire, err := c.transmit(path[0].ID, pkt)
	if err == nil {
		c.m.cover.Inc()
	}
	return wire
}

// sendLoop sends a loop through the strata back to this client's home,
// which pushes it back down the client's connection; it returns when the
// link took it (zero if it did not).
func (c *Client) sendLoop(top *pki.Topology) time.Time {
	hs := c.home.Load()
	path, err := c.path(top, homeHop(hs))
	if err != nil {
		c.m.noRoute.Inc()
		return time.Time{}
	}
	var id sphinx.SURBID
	rand.Read(id[:])
	final := sphinx.DeliverToClient(hs.secret.Token(top.Epoch), id)
	pkt, route, err := c.format.NewPacket(rand.Reader, path, final, c.delay(top), nil)
	if err != nil {
		c.log.Warn("loop packet", "err", err)
		return time.Time{}
	}
	now := time.Now()
	c.mu.Lock()
	c.loops[id] = pendingLoop{sent: now, due: now.Add(route.Total + loopGrace)}
	c.mu.Unlock()
	wire, err := c.transmit(path[0].ID, pkt)
	if err != nil {
		c.mu.Lock()
		delete(c.loops, id)
		c.mu.Unlock()
		return time.Time{}
	}
	c.m.loops.Inc()
	return wire
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

// transmit hands pkt to the link to the home, as an entry frame asking it
// to forward pkt to first, the route's first hop, without waiting: a slot
// that cannot go out now is lost like a packet on a congested link, and
// the schedule does not slip. It returns when the link took the packet.
func (c *Client) transmit(first sphinx.NodeID, pkt []byte) (time.Time, error) {
	home := c.home.Load().id
	if err := c.host.TrySendVia(transport.NodeID(home), transport.NodeID(first), pkt); err != nil {
		c.m.sendErrors.Inc()
		c.log.Debug("send", "home", home, "first", first, "err", err)
		return time.Time{}, err
	}
	return time.Now(), nil
}

// handle takes a frame pushed by the home relay: a returning loop or a
// reply to one of the client's SURBs.
func (c *Client) handle(from transport.NodeID, frame []byte) {
	home := c.home.Load()
	if home == nil || sphinx.NodeID(from) != home.id {
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
