package queue

import (
	"container/heap"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/strata-mix/strata/client"
	bolt "go.etcd.io/bbolt"
)

// Class is the speed/reliability class a sender picks per message.
type Class uint8

const (
	// Fast sends one round with few repair symbols (the measured loss,
	// rounded up) and never resends; nobody acks it.
	Fast Class = 1
	// Reliable sends repair symbols sized so that a round decodes with
	// probability Config.Target at the measured loss, carries SURBs for
	// acks, and resends fresh repair symbols with exponential backoff
	// until acked or Config.Deadline.
	Reliable Class = 2
)

func (c Class) String() string {
	switch c {
	case Fast:
		return "fast"
	case Reliable:
		return "reliable"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Recipient names a recipient: an address the layer above maps to a
// destination (a mailbox, usually). The queue only compares them.
type Recipient string

var (
	// ErrGaveUp reports a Reliable message not acked before its deadline.
	ErrGaveUp = errors.New("queue: not acknowledged before the deadline")
	// ErrTooLarge reports a message above Config.MaxMessage.
	ErrTooLarge = errors.New("queue: message too large")
	// ErrRejected reports a chunk refused by the receiver's limits.
	ErrRejected = errors.New("queue: chunk rejected")
)

// SURBMaker makes the SURBs acks come back through; *client.Client is one.
type SURBMaker interface {
	NewSURB(ctx context.Context) (client.SURB, error)
}

var _ SURBMaker = (*client.Client)(nil)

// Packet is what the queue wants sent in one payload slot: either to a
// recipient (To) or, for acks, through a SURB it received (SURB).
type Packet struct {
	To      Recipient
	SURB    []byte
	Payload []byte
}

// Message is a message the queue reassembled.
type Message struct {
	ID    MsgID
	From  string // the from argument of the Handle call that completed it
	Class Class
	Body  []byte
}

// Outcome tells the application what became of a message it queued: Err nil
// means acked (Reliable) or sent in full (Fast).
type Outcome struct {
	ID    MsgID
	To    Recipient
	Class Class
	Err   error
}

// Config configures a Queue.
type Config struct {
	// Path is the bbolt file that holds outbound messages. Required.
	Path string
	// PayloadSize is the number of bytes the queue may fill per packet:
	// the client's PayloadSize less whatever the layer below the queue
	// wraps around it. At least 64. Required.
	PayloadSize int
	// SURBs makes the SURBs packed with Reliable messages. Required to
	// send Reliable messages.
	SURBs SURBMaker
	// ForwardDelay is the expected latency of a chunk from the slot it
	// leaves in to its final hop (the deterministic route delay the
	// client reports as Sent.Expected − send time, plus queueing at the
	// mailbox). The resend timer is ForwardDelay + the SURB's Delay +
	// ReplyGrace, doubled at each timeout. Default 1 s.
	ForwardDelay time.Duration
	// ReplyGrace covers the receiver's time to answer: waiting for a
	// payload slot and fetching from its mailbox. Default 2 s.
	ReplyGrace time.Duration
	// MaxBackoff caps the resend timer. Default 10 min.
	MaxBackoff time.Duration
	// Deadline is how long a Reliable message is resent before the queue
	// gives up with ErrGaveUp. Default 24 h.
	Deadline time.Duration
	// Target is the probability with which one Reliable round should
	// decode at the measured loss. Default 0.95.
	Target float64
	// MaxMessage is the largest message accepted, sent or received.
	// Default 8 MiB.
	MaxMessage int
	// ReassemblyCap bounds the reassembly memory (partialCost) of all
	// partial messages together; a new message evicts the partial message
	// idle longest of the stream holding the most (limits.go). Default
	// 64 MiB.
	ReassemblyCap int
	// StreamReassemblyCap bounds the reassembly memory of one stream id; a
	// new message evicts the stream's own partial message idle longest, and
	// a message costing more is refused. Default 24 MiB (a MaxMessage
	// message of 8 MiB costs about 8.5 MB), at most ReassemblyCap.
	StreamReassemblyCap int
	// MaxStreams bounds the streams whose receiver state is kept; a new
	// one evicts the stream seen least recently. Default 1024.
	MaxStreams int
	// StreamTTL drops the state of a stream with nothing in reassembly
	// that no item named for that long. Default 24 h (a sender's default
	// Deadline: by then it resends nothing it queued before the silence).
	StreamTTL time.Duration
	// ReassemblyTTL drops a partial message that got no new symbol for
	// that long. Default 10 min.
	ReassemblyTTL time.Duration
	// NeedAfter: a receiver holding a SURB asks for more symbols of a
	// Reliable message that got no new symbol for that long. Default 2 s.
	NeedAfter time.Duration
	// PacketPenalty is the priority cost of one packet: a round queued at
	// t that needs n packets is sent in order of t + n·PacketPenalty
	// (smaller first, none starved). Default 20 ms.
	PacketPenalty time.Duration
	// OnOutcome, if set, learns the fate of every queued message. It is
	// called without locks held and must not block for long.
	OnOutcome func(Outcome)
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Path == "" {
		return errors.New("queue: Config.Path is required")
	}
	if c.PayloadSize < 64 || c.PayloadSize > 1<<16 {
		return fmt.Errorf("queue: Config.PayloadSize %d outside [64, 65536]", c.PayloadSize)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ForwardDelay, time.Second)
	def(&c.ReplyGrace, 2*time.Second)
	def(&c.MaxBackoff, 10*time.Minute)
	def(&c.Deadline, 24*time.Hour)
	def(&c.ReassemblyTTL, 10*time.Minute)
	def(&c.NeedAfter, 2*time.Second)
	def(&c.PacketPenalty, 20*time.Millisecond)
	if !(c.Target > 0 && c.Target < 1) {
		c.Target = 0.95
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = 8 << 20
	}
	if c.ReassemblyCap <= 0 {
		c.ReassemblyCap = 64 << 20
	}
	if c.StreamReassemblyCap <= 0 {
		c.StreamReassemblyCap = 24 << 20
	}
	c.StreamReassemblyCap = min(c.StreamReassemblyCap, c.ReassemblyCap)
	if c.MaxStreams <= 0 {
		c.MaxStreams = 1024
	}
	def(&c.StreamTTL, 24*time.Hour)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Stats are a queue's counters.
type Stats struct {
	Queued, Acked, Sent, GaveUp     uint64 // outbound messages
	Rounds, Resends                 uint64 // rounds prepared; of them, after a timeout or a need
	Packets, ChunkItems, Symbols    uint64 // packets filled by Next and what they held
	SURBItems, AckPackets           uint64
	Delivered, Duplicates           uint64 // inbound messages; symbols of finished messages
	BadPayloads, Rejected           uint64 // malformed payloads; chunks refused by limits
	UnknownAcks, Expired            uint64 // acks for unknown streams; partial messages dropped
	Evicted, StreamsDropped         uint64 // partial messages evicted by the caps; streams forgotten
	InFlight, Reassembling, Pending int
	// Receiver state now (limits.go): streams tracked, acks due, the
	// reassembly bytes (partialCost) and the receiver's bytes counted
	// (reassembly plus per-stream costs).
	Streams, AcksDue               int
	ReassemblyBytes, ReceiverBytes int
	// Unsent counts the messages in flight whose current round has not
	// wholly left yet (being prepared or waiting for payload slots).
	Unsent int
}

// Queue is a sender's and a receiver's message queue. Safe for concurrent
// use. Run must be running for messages to go out.
type Queue struct {
	cfg Config
	db  *bolt.DB
	log *slog.Logger

	wake chan struct{}

	mu       sync.Mutex
	loss     float64
	recips   map[Recipient]*recipQ
	byStream map[StreamID]*recipQ
	msgs     map[MsgID]*outMsg
	ready    msgHeap
	deletes  []MsgID
	outcomes []Outcome

	in       map[StreamID]*inStream
	acksDue  map[StreamID]*ackDue
	inMsgs   map[MsgID]*inMsg
	inBytes  int // partialCost of every partial message
	lastScan time.Time

	closed bool // Close began: Next sends nothing more

	stats Stats
}

type msgState uint8

const (
	stPrep    msgState = iota // Run prepares its next round
	stReserve                 // round planned; its ESIs are being made durable
	stSending                 // in the ready heap
	stWaiting                 // round sent, timer running
	stDone
)

type recipQ struct {
	to      Recipient
	streams [2]StreamID // Fast, Reliable
	next    [2]uint64
	active  map[MsgID]*outMsg
}

func classIndex(c Class) int {
	if c == Reliable {
		return 1
	}
	return 0
}

type outMsg struct {
	id       MsgID
	rq       *recipQ
	class    Class
	body     []byte
	g        geometry
	enc      *Encoder
	created  time.Time
	deadline time.Time
	// mark is the durable ESI mark: no symbol at or above it has left,
	// and the esi bucket holds it (or more). Run raises it before a
	// round's first symbol may leave (reserve); Close lowers it to nextESI.
	mark uint32
	// the first round's size as Put reserved it, at loss firstLoss
	firstKnown   bool
	firstLoss    float64
	firstPackets int

	state      msgState
	nextESI    uint32
	want       int // symbols wanted for the next round; 0 = a full first round
	pendSyms   int
	pendSURBs  [][]byte
	surbDelay  time.Duration
	key        time.Time
	idx        int
	timeouts   int
	timerAt    time.Time
	roundsSent int
}

// Open opens (creating it if needed) the queue database at cfg.Path and
// loads the messages not yet acked: they are resent once Run starts.
func Open(cfg Config) (*Queue, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", cfg.Path, err)
	}
	q := &Queue{
		cfg: cfg, db: db, log: cfg.Logger,
		wake:     make(chan struct{}, 1),
		recips:   map[Recipient]*recipQ{},
		byStream: map[StreamID]*recipQ{},
		msgs:     map[MsgID]*outMsg{},
		in:       map[StreamID]*inStream{},
		acksDue:  map[StreamID]*ackDue{},
		inMsgs:   map[MsgID]*inMsg{},
	}
	if err := q.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return q, nil
}

// Close records how far each message's encoding symbol ids got (so the
// next Open resumes exactly there) and closes the database. Stop Run
// first; Next sends nothing once Close has begun.
func (q *Queue) Close() error {
	q.mu.Lock()
	q.closed = true
	marks := q.exactMarks()
	q.mu.Unlock()
	err := q.db.Update(func(tx *bolt.Tx) error { return putMarks(tx, marks) })
	return errors.Join(err, q.db.Close())
}

// SetLoss sets the packet loss rate the client measures on its loop stream
// (client.Stats.LoopLoss); repair overhead follows it from the next round.
func (q *Queue) SetLoss(p float64) {
	q.mu.Lock()
	q.loss = clampLoss(p)
	q.mu.Unlock()
}

// Holds reports whether message id is still in flight: queued (or
// reloaded after a restart) and not yet acked, sent in full or given up.
func (q *Queue) Holds(id MsgID) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.msgs[id]
	return ok
}

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	s.InFlight = len(q.msgs)
	s.Reassembling = len(q.inMsgs)
	s.Pending = q.ready.Len()
	for _, m := range q.msgs {
		if m.state != stWaiting {
			s.Unsent++
		}
	}
	q.receiverStats(&s)
	return s
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *Queue) recipient(to Recipient) (*recipQ, error) {
	if rq := q.recips[to]; rq != nil {
		return rq, nil
	}
	rq := &recipQ{to: to, active: map[MsgID]*outMsg{}}
	for i := range rq.streams {
		if _, err := rand.Read(rq.streams[i][:]); err != nil {
			return nil, fmt.Errorf("queue: stream id: %w", err)
		}
	}
	q.addRecipient(rq)
	return rq, nil
}

func (q *Queue) addRecipient(rq *recipQ) {
	q.recips[rq.to] = rq
	q.byStream[rq.streams[1]] = rq
}

// Put queues msg for to in class c. It returns once the message is on disk
// (fsynced): from then on it is sent, and resent after a restart, until
// acked (Reliable) or sent in full (Fast).
func (q *Queue) Put(ctx context.Context, to Recipient, msg []byte, c Class) (MsgID, error) {
	if c != Fast && c != Reliable {
		return MsgID{}, fmt.Errorf("queue: unknown class %d", c)
	}
	if len(msg) > q.cfg.MaxMessage {
		return MsgID{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(msg), q.cfg.MaxMessage)
	}
	if c == Reliable && q.cfg.SURBs == nil {
		return MsgID{}, errors.New("queue: Reliable messages need Config.SURBs")
	}
	if len(to) == 0 || len(to) > 0xffff {
		return MsgID{}, fmt.Errorf("queue: recipient of %d bytes", len(to))
	}
	g, err := planMessage(len(msg), q.cfg.PayloadSize)
	if err != nil {
		return MsgID{}, err
	}
	if err := ctx.Err(); err != nil {
		return MsgID{}, err
	}
	now := q.cfg.Now()
	m := &outMsg{class: c, body: slices.Clone(msg), g: g, created: now, deadline: now.Add(q.cfg.Deadline), idx: -1}

	q.mu.Lock()
	rq, err := q.recipient(to)
	if err != nil {
		q.mu.Unlock()
		return MsgID{}, err
	}
	ci := classIndex(c)
	m.id = NewMsgID(rq.streams[ci], rq.next[ci])
	m.rq = rq
	rq.next[ci]++
	// The first round's ESIs are reserved with the message (esi.go), so
	// that Run needs no fsync of its own for it unless the loss changes.
	m.firstLoss = q.loss
	m.firstPackets = q.roundPackets(m, m.firstLoss)
	m.firstKnown = true
	m.mark = uint32(min(m.firstPackets*g.per, maxESI))
	q.mu.Unlock()

	if err := q.db.Batch(func(tx *bolt.Tx) error { return putMessage(tx, rq, m) }); err != nil {
		return MsgID{}, fmt.Errorf("queue: store message: %w", err)
	}
	q.mu.Lock()
	q.msgs[m.id] = m
	rq.active[m.id] = m
	q.stats.Queued++
	q.mu.Unlock()
	q.poke()
	return m.id, nil
}

// Run prepares rounds (encoding, SURBs), fires resend timers and deletes
// finished messages from the database, until ctx ends.
func (q *Queue) Run(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-q.wake:
		case <-tick.C:
		}
		q.step(ctx)
	}
}

// step runs one pass of Run.
func (q *Queue) step(ctx context.Context) {
	now := q.cfg.Now()
	var prep []*outMsg
	q.mu.Lock()
	for _, m := range q.msgs {
		if m.state == stWaiting && !now.Before(m.timerAt) {
			if !now.Before(m.deadline) {
				q.finish(m, ErrGaveUp)
				continue
			}
			m.timeouts++
			m.state = stPrep
			m.want = max(2, (m.g.kPrime+2)/10)
		}
		if m.state == stPrep {
			prep = append(prep, m)
		}
	}
	deletes := q.deletes
	q.deletes = nil
	loss := q.loss
	q.mu.Unlock()

	var planned []*outMsg
	for _, m := range prep {
		ok, err := q.prepare(ctx, m, loss, now)
		if err != nil {
			if ctx.Err() == nil {
				q.log.Warn("queue: preparing a round", "msg", m.id, "err", err)
			}
		}
		if ok {
			planned = append(planned, m)
		}
	}
	q.reserve(planned)
	if len(deletes) > 0 {
		err := q.db.Update(func(tx *bolt.Tx) error {
			b, e := tx.Bucket(bucketMsgs), tx.Bucket(bucketESI)
			for _, id := range deletes {
				if err := b.Delete(id[:]); err != nil {
					return err
				}
				if err := e.Delete(id[:]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			q.log.Error("queue: deleting finished messages", "err", err)
		}
	}
	q.flushOutcomes()
}

// prepare plans the next round of m: its symbol count, SURBs and key. It
// reports whether the round was planned (m is then in stReserve: reserve
// makes its ESIs durable and queues it).
func (q *Queue) prepare(ctx context.Context, m *outMsg, loss float64, now time.Time) (bool, error) {
	// m.enc is read and written under q.mu only (finish clears it when an
	// ack arrives); the encoding itself runs unlocked.
	q.mu.Lock()
	needEnc := m.enc == nil && m.state == stPrep
	q.mu.Unlock()
	var enc *Encoder
	if needEnc {
		e, err := NewEncoder(m.body, m.g.t)
		if err != nil {
			q.mu.Lock()
			q.finish(m, err)
			q.mu.Unlock()
			return false, err
		}
		enc = e
	}
	var surbs [][]byte
	var delay time.Duration
	if m.class == Reliable {
		for range surbCopies(loss) {
			s, err := q.cfg.SURBs.NewSURB(ctx)
			if err != nil {
				return false, fmt.Errorf("queue: SURB: %w", err)
			}
			surbs = append(surbs, s.Bytes)
			delay = max(delay, s.Delay)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if m.state != stPrep {
		return false, nil // acked meanwhile
	}
	if m.enc == nil {
		m.enc = enc
	}
	packets := q.roundPackets(m, loss)
	syms := packets * m.g.per
	// A new message starts at ESI 0 (the source symbols: cheapest to
	// decode); a reloaded one at its durable mark.
	if int(m.nextESI)+syms > maxESI {
		q.finish(m, fmt.Errorf("%w: encoding symbol ids exhausted", ErrGaveUp))
		return false, nil
	}
	m.pendSyms = syms
	m.pendSURBs = surbs
	m.surbDelay = delay
	m.key = now.Add(time.Duration(packets+len(surbs)) * q.cfg.PacketPenalty)
	m.state = stReserve
	return true, nil
}

// roundPackets is the number of packets of m's next round at loss: a full
// first round (after a Put or a restart) when m.want is 0. q.mu held.
func (q *Queue) roundPackets(m *outMsg, loss float64) int {
	want := m.want
	if want == 0 {
		if m.firstKnown && m.firstLoss == loss {
			return m.firstPackets // computed by Put
		}
		want = m.g.kPrime + 2
	}
	n := m.g.packetsFor(want)
	if m.class == Fast {
		return fastPackets(n, loss)
	}
	return reliablePackets(n, loss, q.cfg.Target)
}

// finish ends m: acked or sent (err nil) or given up. q.mu held.
func (q *Queue) finish(m *outMsg, err error) {
	if m.state == stDone {
		return
	}
	if m.idx >= 0 {
		heap.Remove(&q.ready, m.idx)
	}
	m.state = stDone
	m.enc = nil
	delete(q.msgs, m.id)
	delete(m.rq.active, m.id)
	q.deletes = append(q.deletes, m.id)
	switch {
	case err != nil:
		q.stats.GaveUp++
	case m.class == Reliable:
		q.stats.Acked++
	default:
		q.stats.Sent++
	}
	q.outcomes = append(q.outcomes, Outcome{ID: m.id, To: m.rq.to, Class: m.class, Err: err})
	q.poke()
}

func (q *Queue) flushOutcomes() {
	q.mu.Lock()
	out := q.outcomes
	q.outcomes = nil
	q.mu.Unlock()
	if q.cfg.OnOutcome != nil {
		for _, o := range out {
			q.cfg.OnOutcome(o)
		}
	}
}

// lowWater is the smallest sequence number of the recipient's Reliable
// stream still in flight. q.mu held.
func (rq *recipQ) lowWater() uint64 {
	lw := rq.next[1]
	for _, m := range rq.active {
		if m.class == Reliable {
			lw = min(lw, m.id.Seq())
		}
	}
	return lw
}

// Next fills one payload slot: an ack through a SURB if one is due, else
// the chunks (and SURBs) of the most urgent message, topped up with those of
// other messages to the same recipient. ok false: send cover. Next never
// blocks on I/O; the client calls it from its payload stream.
func (q *Queue) Next(now time.Time) (Packet, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return Packet{}, false
	}
	if p, ok := q.nextAck(now); ok {
		return p, true
	}
	if q.ready.Len() == 0 {
		return Packet{}, false
	}
	top := q.ready.items[0]
	b := newBuilder(q.cfg.PayloadSize)
	q.emit(top, b, now)
	if b.room() > ChunkHeaderSize+8 {
		var others []*outMsg
		for _, m := range top.rq.active {
			if m.state == stSending && m != top {
				others = append(others, m)
			}
		}
		slices.SortFunc(others, func(a, b *outMsg) int { return a.key.Compare(b.key) })
		for _, m := range others {
			if b.room() <= ChunkHeaderSize+8 {
				break
			}
			q.emit(m, b, now)
		}
	}
	q.stats.Packets++
	return Packet{To: top.rq.to, Payload: b.buf}, true
}

// emit adds what fits of m's pending round to b. q.mu held.
func (q *Queue) emit(m *outMsg, b *builder, now time.Time) {
	if len(m.pendSURBs) > 0 {
		s := SURBItem{Stream: m.rq.streams[1], LowWater: m.rq.lowWater(), SURB: m.pendSURBs[0]}
		if b.surb(&s) {
			m.pendSURBs = m.pendSURBs[1:]
			q.stats.SURBItems++
		}
	}
	if n := min(m.pendSyms, m.g.per, (b.room()-ChunkHeaderSize)/m.g.t); n > 0 {
		c := Chunk{ID: m.id, Length: uint32(m.g.n), T: uint16(m.g.t), K: uint16(m.g.k), KPrime: uint16(m.g.kPrime), ESI: m.nextESI}
		if m.class == Reliable {
			c.Flags = FlagReliable
		}
		c.Symbols = make([]byte, 0, n*m.g.t)
		for i := range n {
			c.Symbols = append(c.Symbols, m.enc.Symbol(m.nextESI+uint32(i))...)
		}
		if b.chunk(&c) {
			m.nextESI += uint32(n)
			m.pendSyms -= n
			q.stats.ChunkItems++
			q.stats.Symbols += uint64(n)
		}
	}
	if m.pendSyms == 0 && len(m.pendSURBs) == 0 {
		heap.Remove(&q.ready, m.idx)
		m.roundsSent++
		if m.class == Fast {
			q.finish(m, nil)
			return
		}
		m.state = stWaiting
		span := (q.cfg.ForwardDelay + m.surbDelay + q.cfg.ReplyGrace) << min(m.timeouts, 30)
		if span <= 0 || span > q.cfg.MaxBackoff {
			span = q.cfg.MaxBackoff
		}
		m.timerAt = now.Add(span)
	}
}

// handleAck applies a receiver's ack to our stream. q.mu held.
func (q *Queue) handleAck(a *Ack) {
	rq := q.byStream[a.Stream]
	if rq == nil {
		q.stats.UnknownAcks++
		return
	}
	for _, m := range rq.active {
		if m.class == Reliable && m.id.Seq() < a.Cum {
			q.finish(m, nil)
		}
	}
	for _, e := range a.Entries {
		m := rq.active[NewMsgID(a.Stream, e.Seq)]
		if m == nil {
			continue // acked already, or an old entry
		}
		if e.Need == 0 {
			q.finish(m, nil)
			continue
		}
		if m.state == stWaiting {
			m.state = stPrep
			m.want = int(min(e.Need, uint32(m.g.kPrime+2)))
			q.poke()
		}
	}
}

// msgHeap orders rounds by key (then id), smallest first.
type msgHeap struct{ items []*outMsg }

func (h *msgHeap) Len() int { return len(h.items) }
func (h *msgHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if c := a.key.Compare(b.key); c != 0 {
		return c < 0
	}
	return string(a.id[:]) < string(b.id[:])
}
func (h *msgHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].idx = i
	h.items[j].idx = j
}
func (h *msgHeap) Push(x any) {
	m := x.(*outMsg)
	m.idx = len(h.items)
	h.items = append(h.items, m)
}
func (h *msgHeap) Pop() any {
	m := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	m.idx = -1
	return m
}
