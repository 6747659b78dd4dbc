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

// Building ahead of the slots (streams.go): a slot's packet is built
// buildAhead before its due time and handed to the link at the due time,
// so the time a packet leaves does not depend on what it is (a cover
// packet costs four X25519, a reply through a SURB none; a real packet's
// build may also wait on a Source). A slot that comes up more than
// maxSlotLate after its due time — the process was stopped or the machine
// suspended — is skipped, so the client never sends a burst of overdue
// slots; readyPackets bounds the packets built and not yet due.
const (
	buildAhead   = 25 * time.Millisecond
	maxSlotLate  = 100 * time.Millisecond
	readyPackets = 64
)

// errOffline means a slot found the link to the home down.
var errOffline = errors.New("client: the link to the home is down")

// packetKind is what a built packet is, for its accounting once it left.
type packetKind uint8

const (
	kindCover packetKind = iota
	kindLoop
	kindReal
)

// outgoing is a packet built for a slot, waiting for the slot's due time.
type outgoing struct {
	slot  Slot
	kind  packetKind
	first sphinx.NodeID
	pkt   []byte
	// loop is a loop's id (kindLoop).
	loop sphinx.SURBID
	// req is the Send or Source packet a real packet carries (kindReal;
	// req.done is nil for a Source's); route and total describe it.
	req   *sendReq
	route []sphinx.NodeID
	total time.Duration
	reply bool
}

// buildSlots draws the slots of the schedule and builds each one's packet
// buildAhead before it is due, handing it to ready, until the client
// closes.
func (c *Client) buildSlots(s *Scheduler, ready chan<- outgoing) {
	defer close(ready)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		slot, ok := s.Next()
		if !ok {
			<-c.ctx.Done()
			return
		}
		// A slot already due takes no timer: a client behind its
		// schedule skips overdue slots at the cost of drawing them.
		if wait := time.Until(slot.Due.Add(-buildAhead)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-c.ctx.Done():
				return
			case <-timer.C:
			}
		} else if c.ctx.Err() != nil {
			return
		}
		if time.Since(slot.Due) > maxSlotLate {
			c.m.missed.Inc()
			continue
		}
		o, ok := c.build(slot)
		if !ok {
			continue
		}
		select {
		case ready <- o:
		case <-c.ctx.Done():
			return
		}
	}
}

// sendSlots hands every built packet to the link at its slot's due time.
// It does nothing else, so a packet leaves at its due time (or, if it was
// built late, at once) whatever it carries.
func (c *Client) sendSlots(ready <-chan outgoing) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for o := range ready {
		if d := time.Until(o.slot.Due); d > 0 {
			timer.Reset(d)
			select {
			case <-c.ctx.Done():
				return
			case <-timer.C:
			}
		}
		c.launch(o)
	}
}

// build makes the packet of one Loopix slot: for the payload stream a
// packet Send queued (or one whose slot found the link down, first) if
// there is one, else the Source's, else cover; a loop for the loop
// stream; drop cover for the drop stream. Every packet has the same size
// and leaves at the slot's time, whatever it carries. While the link to
// the home is down the slot builds nothing and takes nothing from Send's
// queue: the packets wait for the link. ok is false when the slot sends
// nothing.
func (c *Client) build(s Slot) (o outgoing, ok bool) {
	top := c.cfg.Topology()
	if top == nil {
		return o, false
	}
	c.epochChange(top)
	c.expireLoops(s.Due)
	if !c.linkUp.Load() {
		c.m.offline.Inc()
		return o, false
	}
	switch s.Stream {
	case PayloadStream:
		o, ok = c.buildPayload(top, s.Due)
	case LoopStream:
		o, ok = c.buildLoop(top, s.Due)
	default:
		o, ok = c.buildCover(top)
	}
	if !ok && c.cfg.trace != nil {
		c.cfg.trace(s, false, time.Time{})
	}
	o.slot = s
	return o, ok
}

// buildPayload fills a payload slot: a packet held back from a slot that
// found the link down, else the oldest packet Send queued, else the
// Source's, else cover. A real packet that cannot be built (no route, a
// bad SURB) gives its slot to cover, so the slot is never empty on the
// wire.
func (c *Client) buildPayload(top *pki.Topology, due time.Time) (outgoing, bool) {
	var req *sendReq
	select {
	case r := <-c.held:
		req = &r
	default:
		select {
		case r := <-c.queue:
			req = &r
		default:
		}
	}
	if req == nil {
		if box := c.source.Load(); box != nil {
			if d, p, ok := box.s.Next(due); ok {
				req = &sendReq{dest: d, payload: p}
			}
		}
	}
	if req != nil {
		o, err := c.buildReal(top, req)
		if err == nil {
			return o, true
		}
		if req.done != nil {
			req.done <- sendResult{err: err}
		} else {
			c.log.Debug("source packet not sent", "err", err)
		}
	}
	return c.buildCover(top)
}

// buildReal builds the real packet req asks for.
func (c *Client) buildReal(top *pki.Topology, req *sendReq) (outgoing, error) {
	if len(req.payload) > c.PayloadSize() {
		return outgoing{}, ErrTooLarge
	}
	if d := req.dest; d.surb != nil {
		pkt, err := c.format.NewReply(d.surb, c.pad(req.payload))
		if err != nil {
			return outgoing{}, err
		}
		return outgoing{kind: kindReal, first: d.surb.FirstHop, pkt: pkt, req: req, reply: true,
			route: []sphinx.NodeID{d.surb.FirstHop}}, nil
	}
	path, err := c.path(top, mailboxHop(req.dest.mailbox))
	if err != nil {
		c.m.noRoute.Inc()
		return outgoing{}, err
	}
	pkt, route, err := c.format.NewPacket(rand.Reader, path, sphinx.DeliverToMailbox(), c.delay(top), c.pad(req.payload))
	if err != nil {
		return outgoing{}, err
	}
	ids := make([]sphinx.NodeID, len(path))
	for i, h := range path {
		ids[i] = h.ID
	}
	return outgoing{kind: kindReal, first: path[0].ID, pkt: pkt, req: req, route: ids, total: route.Total}, nil
}

// buildCover builds a drop cover packet through the strata to a random
// mailbox.
func (c *Client) buildCover(top *pki.Topology) (outgoing, bool) {
	path, err := c.path(top, c.coverHop)
	if err != nil {
		c.m.noRoute.Inc()
		return outgoing{}, false
	}
	pkt, _, err := c.format.NewPacket(rand.Reader, path, sphinx.DropCover(), c.delay(top), nil)
	if err != nil {
		c.log.Warn("cover packet", "err", err)
		return outgoing{}, false
	}
	return outgoing{kind: kindCover, first: path[0].ID, pkt: pkt}, true
}

// buildLoop builds a loop through the strata back to this client's home,
// which pushes it back down the client's connection, and expects it back
// from its due time on.
func (c *Client) buildLoop(top *pki.Topology, due time.Time) (outgoing, bool) {
	hs := c.home.Load()
	path, err := c.path(top, homeHop(hs))
	if err != nil {
		c.m.noRoute.Inc()
		return outgoing{}, false
	}
	var id sphinx.SURBID
	rand.Read(id[:])
	final := sphinx.DeliverToClient(hs.secret.Token(top.Epoch), id)
	pkt, route, err := c.format.NewPacket(rand.Reader, path, final, c.delay(top), nil)
	if err != nil {
		c.log.Warn("loop packet", "err", err)
		return outgoing{}, false
	}
	sent := due
	if now := time.Now(); now.After(due) {
		sent = now
	}
	c.mu.Lock()
	c.loops[id] = pendingLoop{sent: sent, due: sent.Add(route.Total + loopGrace)}
	c.mu.Unlock()
	return outgoing{kind: kindLoop, first: path[0].ID, pkt: pkt, loop: id}, true
}

// launch hands a built packet to the link and accounts for it. A packet
// whose slot finds the link to the home down is not sent; a real one goes
// back to the front of the payload stream (held), so nothing Send queued
// is lost while the home is away.
func (c *Client) launch(o outgoing) {
	var wire time.Time
	var err error
	if !c.linkUp.Load() {
		c.m.offline.Inc()
		err = errOffline
	} else {
		wire, err = c.transmit(o.first, o.pkt)
	}
	switch o.kind {
	case kindCover:
		if err == nil {
			c.m.cover.Inc()
		}
	case kindLoop:
		if err == nil {
			c.m.loops.Inc()
		} else {
			c.mu.Lock()
			delete(c.loops, o.loop)
			c.mu.Unlock()
		}
	case kindReal:
		switch {
		case err == nil:
			c.m.real.Inc()
			sent := Sent{Route: o.route}
			if !o.reply {
				sent.Expected = wire.Add(o.total)
			}
			if o.req.done != nil {
				o.req.done <- sendResult{sent: sent}
			}
		case err == errOffline:
			c.hold(*o.req)
		case o.req.done != nil:
			o.req.done <- sendResult{err: err}
		}
	}
	if c.cfg.trace != nil {
		c.cfg.trace(o.slot, o.kind == kindReal && err == nil, wire)
	}
}

// hold puts back a real packet whose slot found the link down, for the
// next payload slot after the link is back. held has room for every
// packet in flight between build and launch; should it not, the Send
// fails rather than blocking the stream.
func (c *Client) hold(r sendReq) {
	select {
	case c.held <- r:
	default:
		if r.done != nil {
			r.done <- sendResult{err: errOffline}
		}
	}
}

// sendCover builds a drop cover packet and hands it to the link at once
// (benchmarks); it returns when the link took it (zero if it did not).
func (c *Client) sendCover(top *pki.Topology) time.Time {
	o, ok := c.buildCover(top)
	if !ok {
		return time.Time{}
	}
	wire, err := c.transmit(o.first, o.pkt)
	if err == nil {
		c.m.cover.Inc()
	}
	return wire
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
