package queue

import (
	"fmt"
	"slices"
	"time"
)

// Receiver state: per stream (one sender's Reliable or Fast stream to us)
// the finished sequence numbers and the SURBs to answer through; per
// message in progress, its decoder.
const (
	maxStreamSURBs = 16   // newest kept; older ones are dropped
	maxDoneSparse  = 4096 // finished seqs above the cumulative mark
)

type inStream struct {
	cum   uint64              // every seq < cum is finished
	done  map[uint64]struct{} // finished seqs ≥ cum
	surbs [][]byte
	needs map[uint64]uint32
}

// dueAck schedules an ack on stream id: as many copies, each through its
// own SURB, as a round carries SURBs at the measured loss (surbCopies), so
// that one arrives with probability ≥ 0.95 when the SURBs are there. q.mu
// held.
func (q *Queue) dueAck(id StreamID) {
	q.acksDue[id] = max(q.acksDue[id], surbCopies(q.loss))
}

type inMsg struct {
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

func (q *Queue) stream(id StreamID) *inStream {
	st := q.in[id]
	if st == nil {
		st = &inStream{done: map[uint64]struct{}{}, needs: map[uint64]uint32{}}
		q.in[id] = st
	}
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
// replies). from names where it came from (a mailbox, a contact): the
// reassembly memory cap applies per from. It returns the messages the
// payload completed. A malformed payload is rejected whole and counted.
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
		st := q.stream(s.Stream)
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
	st := q.stream(c.ID.Stream())
	seq := c.ID.Seq()
	reliable := c.Flags&FlagReliable != 0
	if st.isDone(seq) {
		q.stats.Duplicates += uint64(c.Count())
		if reliable {
			q.dueAck(c.ID.Stream()) // our ack may have been lost
		}
		return nil, nil
	}
	im := q.inMsgs[c.ID]
	if im == nil {
		if int(c.Length) > q.cfg.MaxMessage {
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: message of %d bytes", ErrRejected, c.Length)
		}
		cost := int(c.KPrime) * int(c.T)
		if q.fromBytes[from]+cost > q.cfg.ReassemblyCap {
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: %s holds %d bytes in reassembly", ErrRejected, from, q.fromBytes[from])
		}
		dec, err := NewDecoder(int(c.Length), int(c.T))
		if err != nil {
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
		im = &inMsg{from: from, flags: c.Flags, length: int(c.Length), t: int(c.T), kPrime: int(c.KPrime), cost: cost, dec: dec, lastNew: now}
		q.inMsgs[c.ID] = im
		q.fromBytes[from] += cost
	}
	if im.flags != c.Flags || im.length != int(c.Length) || im.t != int(c.T) || im.from != from {
		q.stats.Rejected++
		return nil, fmt.Errorf("%w: chunk of %x disagrees with the message's parameters", ErrRejected, c.ID)
	}
	before := im.dec.Received()
	for i := range c.Count() {
		done, err := im.dec.Add(c.ESI+uint32(i), c.Symbols[i*im.t:(i+1)*im.t])
		if err != nil {
			q.stats.Rejected++
			return nil, fmt.Errorf("%w: %w", ErrRejected, err)
		}
		if done {
			q.dropIn(c.ID, im)
			st.markDone(seq)
			delete(st.needs, seq)
			if reliable {
				q.dueAck(c.ID.Stream())
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

func (q *Queue) dropIn(id MsgID, im *inMsg) {
	delete(q.inMsgs, id)
	q.fromBytes[im.from] -= im.cost
	if q.fromBytes[im.from] <= 0 {
		delete(q.fromBytes, im.from)
	}
}

// scan expires stale partial messages and asks for symbols of stalled
// Reliable ones. q.mu held.
func (q *Queue) scan(now time.Time) {
	if now.Sub(q.lastScan) < q.cfg.NeedAfter/4 {
		return
	}
	q.lastScan = now
	for id, im := range q.inMsgs {
		idle := now.Sub(im.lastNew)
		if idle >= q.cfg.ReassemblyTTL {
			q.dropIn(id, im)
			q.stats.Expired++
			continue
		}
		if im.flags&FlagReliable == 0 || idle < q.cfg.NeedAfter || now.Sub(im.needSent) < q.cfg.NeedAfter {
			continue
		}
		st := q.stream(id.Stream())
		if len(st.surbs) == 0 {
			continue
		}
		st.needs[id.Seq()] = uint32(max(1, im.kPrime+2-im.dec.Received()))
		q.dueAck(id.Stream())
		im.needSent = now
	}
}

// nextAck returns an ack packet through a SURB if one is due. q.mu held.
func (q *Queue) nextAck(now time.Time) (Packet, bool) {
	q.scan(now)
	for id := range q.acksDue {
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
		if q.acksDue[id]--; q.acksDue[id] <= 0 && len(st.needs) == 0 {
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
