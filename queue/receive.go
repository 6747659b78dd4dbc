package queue

import (
	"fmt"
	"slices"
	"time"
)

// Receiver state: per stream (one sender's Reliable or Fast stream to us)
// the finished sequence numbers, the SURBs to answer through and the
// partial messages; per message in progress, its decoder. Until items are
// sealed (issue 17), the stream id is all that tells senders apart at the
// receiver, so every limit is per stream id, with global bounds over all of
// them (limits.go).
const (
	maxStreamSURBs = 16   // newest kept; older ones are dropped
	maxDoneSparse  = 4096 // finished seqs above the cumulative mark
)

type inStream struct {
	cum      uint64              // every seq < cum is finished
	done     map[uint64]struct{} // finished seqs ≥ cum
	surbs    [][]byte
	needs    map[uint64]uint32
	partials map[uint64]*inMsg // messages of the stream in reassembly
	bytes    int               // their cost (partialCost)
	lastSeen time.Time         // last item naming the stream
}

// ackDue is an ack to send on a stream: copies left, and since when it
// waits (an ack that finds no SURB for ReassemblyTTL is dropped).
type ackDue struct {
	copies int
	since  time.Time
}

// dueAck schedules an ack on stream id: as many copies, each through its
// own SURB, as a round carries SURBs at the measured loss (surbCopies), so
// that one arrives with probability ≥ 0.95 when the SURBs are there. q.mu
// held; the stream exists.
func (q *Queue) dueAck(id StreamID, now time.Time) {
	a := q.acksDue[id]
	if a == nil {
		a = &ackDue{since: now}
		q.acksDue[id] = a
	}
	a.copies = max(a.copies, surbCopies(q.loss))
}

type inMsg struct {
	id       MsgID
	from     string
	flags    uint8
	length   int
	t        int
	kPrime   int
	cost     int
	dec      *Decoder
	lastNew  time.Time
	needSent time.Time
}

// stream returns the state of stream id, creating it (and making room
// for it under MaxStreams) if needed, and records the activity. q.mu held.
func (q *Queue) stream(id StreamID, now time.Time) *inStream {
	st := q.in[id]
	if st == nil {
		if len(q.in) >= q.cfg.MaxStreams {
			q.evictStream()
		}
		st = &inStream{done: map[uint64]struct{}{}, needs: map[uint64]uint32{}, partials: map[uint64]*inMsg{}}
		q.in[id] = st
	}
	st.lastSeen = now
	return st
}

func (st *inStream) isDone(seq uint64) bool {
	if seq < st.cum {
		return true
	}
	_, ok := st.done[seq]
	return ok
}

func (st *inStream) markDone(seq uint64) {
	if seq < st.cum {
		return
	}
	st.done[seq] = struct{}{}
	st.advance()
	if len(st.done) > maxDoneSparse {
		// Forget the oldest: a resend of it would be delivered again,
		// never acked without being delivered.
		delete(st.done, slices.Min(slices.Collect(mapKeys(st.done))))
	}
}

func (st *inStream) advance() {
	for {
		if _, ok := st.done[st.cum]; !ok {
			return
		}
		delete(st.done, st.cum)
		st.cum++
	}
}

func mapKeys(m map[uint64]struct{}) func(func(uint64) bool) {
	return func(yield func(uint64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Handle takes one received payload: chunks (from senders), SURBs (from
// senders, to ack through) and acks (from our recipients, arriving as SURB
// replies). from names where it came from (a mailbox, a contact): it is
// reported in Message.From, and all chunks of one message must share it.
// The receiver's limits apply per stream id (limits.go). It returns the
// messages the payload completed. A malformed payload is rejected whole and
// counted.
func (q *Queue) Handle(from string, payload []byte) ([]Message, error) {
	p, err := Parse(payload)
	now := q.cfg.Now()
	q.mu.Lock()
	if err != nil {
		q.stats.BadPayloads++
		q.mu.Unlock()
		return nil, err
	}
	for i := range p.Acks {
		q.handleAck(&p.Acks[i])
	}
	for _, s := range p.SURBs {
		st := q.stream(s.Stream, now)
		if s.LowWater > st.cum {
			st.cum = s.LowWater
			for seq := range st.done {
				if seq < st.cum {
					delete(st.done, seq)
				}
			}
			st.advance()
		}
		st.surbs = append(st.surbs, slices.Clone(s.SURB))
		if len(st.surbs) > maxStreamSURBs {
			st.surbs = slices.Delete(st.surbs, 0, len(st.surbs)-maxStreamSURBs)
		}
	}
	var out []Message
	var errs []error
	for i := range p.Chunks {
		m, err := q.handleChunk(from, &p.Chunks[i], now)
		if err != nil {
			errs = append(errs, err)
		}
		if m != nil {
			out = append(out, *m)
		}
	}
	q.mu.Unlock()
	q.flushOutcomes()
	if len(errs) > 0 {
		return out, errs[0]
	}
	return out, nil
}

// handleChunk feeds one chunk to its message's decoder. q.mu held.
func (q *Queue) handleChunk(from string, c *Chunk, now time.Time) (*Message, error) {
	st := q.stream(c.ID.Stream(), now)
	seq := c.ID.Seq()
	reliable := c.Flags&FlagReliable != 0
	if st.isDone(seq) {
		q.stats.Duplicates += uint64(c.Count())
		if reliable {
			q.dueAck(c.ID.Stream(), now) // our ack may have been lost
		}
		return nil, nil
	}
	im := st.partials[seq]
	if im == nil {
		if int(c.Length) > q.cfg.MaxMessage {
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: message of %d bytes", ErrRejected, c.Length)
		}
		cost := partialCost(int(c.KPrime), int(c.T))
		if cost > q.cfg.StreamReassemblyCap {
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: a message costing %d bytes of reassembly, the stream may hold %d", ErrRejected, cost, q.cfg.StreamReassemblyCap)
		}
		dec, err := NewDecoder(int(c.Length), int(c.T))
		if err != nil {
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
		q.makeRoom(st, cost)
		im = &inMsg{id: c.ID, from: from, flags: c.Flags, length: int(c.Length), t: int(c.T), kPrime: int(c.KPrime), cost: cost, dec: dec, lastNew: now}
		q.addIn(st, im)
	}
	if im.flags != c.Flags || im.length != int(c.Length) || im.t != int(c.T) || im.from != from {
		q.stats.Rejected++
		return nil, fmt.Errorf("%w: chunk of %x disagrees with the message's parameters", ErrRejected, c.ID)
	}
	before := im.dec.Received()
	for i := range c.Count() {
		if im.dec.Received() >= im.kPrime+maxExtraSymbols {
			// Honest symbols decode long before (K'+2 fail ~1e-6): the
			// rest is junk, and would only grow the decoder.
			q.dropIn(st, im)
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: %x did not decode from %d symbols", ErrRejected, c.ID, im.dec.Received())
		}
		done, err := im.dec.Add(c.ESI+uint32(i), c.Symbols[i*im.t:(i+1)*im.t])
		if err != nil {
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
		if done {
			q.dropIn(st, im)
			st.markDone(seq)
			delete(st.needs, seq)
			if reliable {
				q.dueAck(c.ID.Stream(), now)
			}
			q.stats.Delivered++
			class := Fast
			if reliable {
				class = Reliable
			}
			return &Message{ID: c.ID, From: from, Class: class, Body: slices.Clone(im.dec.Message())}, nil
		}
	}
	if im.dec.Received() > before {
		im.lastNew = now
	} else {
		q.stats.Duplicates += uint64(c.Count())
	}
	return nil, nil
}

// scan expires stale partial messages, idle streams and acks that found
// no SURB, and asks for symbols of stalled Reliable messages. q.mu held.
func (q *Queue) scan(now time.Time) {
	if now.Sub(q.lastScan) < q.cfg.NeedAfter/4 {
		return
	}
	q.lastScan = now
	for id, im := range q.inMsgs {
		st := q.in[id.Stream()]
		idle := now.Sub(im.lastNew)
		if idle >= q.cfg.ReassemblyTTL {
			q.dropIn(st, im)
			q.stats.Expired++
			continue
		}
		if im.flags&FlagReliable == 0 || idle < q.cfg.NeedAfter || now.Sub(im.needSent) < q.cfg.NeedAfter {
			continue
		}
		if len(st.surbs) == 0 {
			continue
		}
		st.needs[id.Seq()] = uint32(max(1, im.kPrime+2-im.dec.Received()))
		q.dueAck(id.Stream(), now)
		im.needSent = now
	}
	q.pruneStreams(now)
}

// nextAck returns an ack packet through a SURB if one is due. q.mu held.
func (q *Queue) nextAck(now time.Time) (Packet, bool) {
	q.scan(now)
	for id, due := range q.acksDue {
		st := q.in[id]
		if len(st.surbs) == 0 {
			continue // until a SURB arrives
		}
		a := Ack{Stream: id, Cum: st.cum}
		for seq, need := range st.needs {
			a.Entries = append(a.Entries, AckEntry{Seq: seq, Need: need})
		}
		done := slices.Sorted(mapKeys(st.done))
		slices.Reverse(done) // newest first: the likeliest still in flight
		for _, seq := range done {
			a.Entries = append(a.Entries, AckEntry{Seq: seq})
		}
		b := newBuilder(q.cfg.PayloadSize)
		n := b.ack(&a)
		if n < 0 {
			return Packet{}, false
		}
		for _, e := range a.Entries[:n] {
			delete(st.needs, e.Seq)
		}
		if due.copies--; due.copies <= 0 && len(st.needs) == 0 {
			delete(q.acksDue, id)
		}
		s := st.surbs[len(st.surbs)-1]
		st.surbs = st.surbs[:len(st.surbs)-1]
		q.stats.AckPackets++
		q.stats.Packets++
		return Packet{SURB: s, Payload: b.buf}, true
	}
	return Packet{}, false
}
