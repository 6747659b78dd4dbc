package queue

import "time"

// Receiver limits. Until items are sealed, a stream id (8 bytes chosen by
// the sender, carried in clear) is the only thing that tells senders apart
// at a receiver: every mailbox item reaches the queue with the same from.
// So the limits are per stream id, with global bounds that no stream, and
// no number of forged stream ids, can push the receiver past:
//
//   - a partial message costs partialCost(K', T) bytes of reassembly
//     memory; one stream may hold StreamReassemblyCap of it (a new message
//     evicts the stream's own partial message idle longest), all streams
//     together ReassemblyCap (a new message evicts the partial message idle
//     longest of the stream holding the most bytes);
//   - a partial message takes at most K'+maxExtraSymbols distinct symbols
//     and is dropped if they do not decode;
//   - at most MaxStreams streams are tracked: a new one evicts the stream
//     seen least recently (with its partial messages and due ack); a stream
//     with no partial message not seen for StreamTTL is dropped;
//   - an ack due on a stream that has no SURB for ReassemblyTTL is dropped.
//
// Forgetting a stream forgets which of its messages were delivered: a
// later resend of one is delivered again (applications deduplicate by
// MsgID, as after a receiver restart), and acks wait for the sender's next
// SURBs.
const (
	// maxExtraSymbols bounds the distinct symbols a partial message takes
	// beyond K' (an honest one decodes from K'+2 but for ~1e-6).
	maxExtraSymbols = 16
	// partialOverhead is the fixed cost counted per partial message (its
	// decoder and map entries), on top of its symbols.
	partialOverhead = 2048
	// streamOverhead is the fixed cost counted per tracked stream; a
	// finished seq above cum costs doneEntryCost, a need entry
	// needEntryCost, a SURB its length.
	streamOverhead = 512
	doneEntryCost  = 48
	needEntryCost  = 48
)

// partialCost is what a partial message of K' symbols of T bytes counts
// against the reassembly caps: the symbols it may hold plus its overhead.
func partialCost(kPrime, t int) int { return (kPrime+maxExtraSymbols)*t + partialOverhead }

// addIn records a new partial message of st. q.mu held.
func (q *Queue) addIn(st *inStream, im *inMsg) {
	q.inMsgs[im.id] = im
	st.partials[im.id.Seq()] = im
	st.bytes += im.cost
	q.inBytes += im.cost
}

// dropIn forgets a partial message of st. q.mu held.
func (q *Queue) dropIn(st *inStream, im *inMsg) {
	delete(q.inMsgs, im.id)
	delete(st.partials, im.id.Seq())
	delete(st.needs, im.id.Seq())
	st.bytes -= im.cost
	q.inBytes -= im.cost
}

// makeRoom evicts partial messages until one costing cost fits in st and in
// the global cap (cost ≤ StreamReassemblyCap ≤ ReassemblyCap). q.mu held.
func (q *Queue) makeRoom(st *inStream, cost int) {
	for st.bytes+cost > q.cfg.StreamReassemblyCap && len(st.partials) > 0 {
		q.evictOldest(st)
	}
	for q.inBytes+cost > q.cfg.ReassemblyCap {
		var big *inStream
		for _, s := range q.in {
			if big == nil || s.bytes > big.bytes {
				big = s
			}
		}
		if big == nil || len(big.partials) == 0 {
			return
		}
		q.evictOldest(big)
	}
}

// evictOldest drops st's partial message idle longest. q.mu held.
func (q *Queue) evictOldest(st *inStream) {
	var old *inMsg
	for _, im := range st.partials {
		if old == nil || im.lastNew.Before(old.lastNew) || (im.lastNew.Equal(old.lastNew) && im.id.Seq() < old.id.Seq()) {
			old = im
		}
	}
	if old != nil {
		q.dropIn(st, old)
		q.stats.Evicted++
	}
}

// evictStream drops the stream seen least recently. q.mu held.
func (q *Queue) evictStream() {
	var oldID StreamID
	var old *inStream
	for id, st := range q.in {
		if old == nil || st.lastSeen.Before(old.lastSeen) {
			oldID, old = id, st
		}
	}
	if old != nil {
		q.dropStream(oldID, old)
	}
}

// dropStream forgets stream id: its partial messages, finished set, SURBs
// and due ack. q.mu held.
func (q *Queue) dropStream(id StreamID, st *inStream) {
	for _, im := range st.partials {
		q.dropIn(st, im)
	}
	delete(q.in, id)
	delete(q.acksDue, id)
	q.stats.StreamsDropped++
}

// pruneStreams drops streams idle for StreamTTL with nothing in reassembly,
// and acks that found no SURB for ReassemblyTTL. q.mu held.
func (q *Queue) pruneStreams(now time.Time) {
	for id, st := range q.in {
		if len(st.partials) == 0 && now.Sub(st.lastSeen) >= q.cfg.StreamTTL {
			q.dropStream(id, st)
		}
	}
	for id, due := range q.acksDue {
		if len(q.in[id].surbs) == 0 && now.Sub(due.since) >= q.cfg.ReassemblyTTL {
			delete(q.acksDue, id)
		}
	}
}

// receiverStats fills the receiver's part of s. q.mu held.
func (q *Queue) receiverStats(s *Stats) {
	s.Streams = len(q.in)
	s.AcksDue = len(q.acksDue)
	s.ReassemblyBytes = q.inBytes
	s.ReceiverBytes = q.inBytes
	for _, st := range q.in {
		s.ReceiverBytes += streamOverhead + doneEntryCost*len(st.done) + needEntryCost*len(st.needs)
		for _, b := range st.surbs {
			s.ReceiverBytes += len(b)
		}
	}
}
