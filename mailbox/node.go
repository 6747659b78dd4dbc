package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/sphinx"
)

// Defaults of a mailbox node.
const (
	// DefaultReserve is how many SURBs of a mailbox's stock the node never
	// spends on pushes: they carry the "send more SURBs" request, so the
	// owner is never left without a way to hear from the node.
	DefaultReserve = 1
	// DefaultLowWater is the stock under which the node asks for more.
	DefaultLowWater = 4
	// MaxStock caps the SURBs a node keeps per mailbox.
	MaxStock = 256
	// ClockSkew is how far a signed request's time may be from the node's.
	ClockSkew = 10 * time.Minute
	// DefaultWorkers is how many requests a node executes at once.
	DefaultWorkers = 64
	// inbox is how many requests wait for each worker (workers.go).
	inbox = 128
	// pushScan is how many undelivered messages one push reads.
	pushScan = 1000
)

// NodeConfig configures a mailbox Node.
type NodeConfig struct {
	Store  *Store
	Format *sphinx.Format
	// Send sends a packet to its first hop (the node's transport). It
	// must not wait: the node passes a context that is already done, so
	// transport.Host.Send fails at once on a full queue, as TrySend does;
	// the packet is then dropped and counted (dropped{reason="send"}).
	// Replies and the cover loops of SendCover both leave through it.
	Send func(ctx context.Context, to sphinx.NodeID, pkt []byte) error
	// FirstHop reports whether id may be the first hop of a packet the
	// node sends: a relay of the first stratum of the current or previous
	// epoch (FirstHops.Allowed). A SURB naming any other first hop is
	// refused before its reply is built (dropped{reason="first_hop"}) and
	// nothing is sent, so a user's SURB cannot make the node dial an
	// arbitrary node. Required.
	FirstHop func(id sphinx.NodeID) bool
	// Epoch returns the current key epoch. A stocked SURB is labelled
	// with the epoch its request names (the epoch its keys are for) and
	// kept while that epoch is the current or the previous one, the
	// epochs whose keys relays and clients keep; a request naming an
	// epoch outside [current−1, current+1] stocks nothing.
	Epoch func() uint64
	// PutWork is the proof of work (leading zero bits, at most
	// MaxPutWork) every Put must carry (WorkScheme, work.go); 0 accepts
	// Puts of scheme 0 without work. DefaultPutWork is the recommended
	// setting.
	PutWork int
	// Auth are the auth plug-ins by wire id; default Ed25519Auth.
	Auth []Authenticator
	// Reserve and LowWater tune the SURB stock (DefaultReserve,
	// DefaultLowWater).
	Reserve, LowWater int
	// Retention sweeps (and the dropping of SURBs of past epochs) run
	// every SweepEvery; default 1 minute.
	SweepEvery time.Duration
	// Workers is how many requests run at once (DefaultWorkers); requests
	// for one mailbox always run on the same worker (a keyed hash of the
	// id), in arrival order, and concurrent stores share fsyncs.
	Workers    int
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Node is a mailbox node's service: it executes the requests that arrive
// as DeliverMailbox packets (Handle), stores messages, and pushes them to
// each mailbox's owner through the SURBs the owner stocked, asking for more
// before the stock runs out.
type Node struct {
	cfg   NodeConfig
	codec Codec
	auth  map[byte]Authenticator
	log   *slog.Logger
	in    []*workQueue
	seed  maphash.Seed // picks workers (workers.go)
	m     nodeMetrics
	// noWait is always done: the node's sends never wait (send.go).
	noWait context.Context

	mu    sync.Mutex
	stock map[ID][]StockedSURB
	total int         // SURBs in stock, all mailboxes
	asked map[ID]bool // a NeedSURBs went out since the last stock

	// marks are messages pushed but not yet marked delivered on disk:
	// a flusher writes them in the background so that a push does not
	// wait for a second fsync; pushes skip them meanwhile. spent are the
	// store keys of SURBs spent or expired, removed from the file by the
	// same flush.
	markMu sync.Mutex
	marks  map[ID]map[uint64]bool
	spent  [][]byte
	kick   chan struct{}
	// gate orders a push's read of the store and of marks against the
	// flusher dropping marks it wrote: a push holds it shared across both,
	// the flusher exclusively while dropping.
	gate sync.RWMutex
}

type nodeMetrics struct {
	requests *prometheus.CounterVec
	stored   prometheus.Counter
	pushed   prometheus.Counter
	replies  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	surbs    prometheus.Gauge
}

// NewNode returns a mailbox node service; Run must be running for it to
// handle requests.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.Store == nil || cfg.Format == nil || cfg.Send == nil || cfg.Epoch == nil || cfg.FirstHop == nil {
		return nil, errors.New("mailbox: NodeConfig needs Store, Format, Send, FirstHop and Epoch")
	}
	if cfg.PutWork < 0 || cfg.PutWork > MaxPutWork {
		return nil, fmt.Errorf("mailbox: PutWork %d out of [0, %d]", cfg.PutWork, MaxPutWork)
	}
	if cfg.Reserve <= 0 {
		cfg.Reserve = DefaultReserve
	}
	if cfg.LowWater <= cfg.Reserve {
		cfg.LowWater = max(DefaultLowWater, cfg.Reserve+1)
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if len(cfg.Auth) == 0 {
		cfg.Auth = []Authenticator{Ed25519Auth{}}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := cfg.Format.Geometry()
	n := &Node{
		cfg: cfg, log: log, in: make([]*workQueue, cfg.Workers), seed: maphash.MakeSeed(),
		codec: Codec{SURBSize: g.SURBSize(), MaxSize: g.PayloadCapacity() - 2},
		auth:  map[byte]Authenticator{}, stock: map[ID][]StockedSURB{}, asked: map[ID]bool{},
		marks: map[ID]map[uint64]bool{}, kick: make(chan struct{}, 1),
	}
	stock, err := cfg.Store.SURBs()
	if err != nil {
		return nil, fmt.Errorf("mailbox: load the SURB stock: %w", err)
	}
	for id, s := range stock {
		n.set(id, s)
	}
	noWait, stop := context.WithCancel(context.Background())
	stop()
	n.noWait = noWait
	for i := range n.in {
		n.in[i] = newWorkQueue(inbox)
	}
	for _, a := range cfg.Auth {
		n.auth[a.ID()] = a
	}
	n.m = nodeMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_mailbox_requests_total", Help: "Requests handled, by op."}, []string{"op"}),
		stored:   prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_mailbox_stored_total", Help: "Messages stored (fsynced)."}),
		pushed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_mailbox_pushed_total", Help: "Messages pushed to owners through SURBs."}),
		replies:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_mailbox_replies_total", Help: "Replies sent through SURBs, by op."}, []string{"op"}),
		dropped:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_mailbox_dropped_total", Help: "Requests (or SURBs) dropped or refused, by reason."}, []string{"reason"}),
		surbs:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "strata_mailbox_surbs", Help: "SURBs in stock, all mailboxes."}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(n.m.requests, n.m.stored, n.m.pushed, n.m.replies, n.m.dropped, n.m.surbs)
	}
	n.m.surbs.Set(float64(n.total))
	return n, nil
}

// Handle takes the message of a DeliverMailbox packet (relay.Local.Mailbox).
// It copies it and queues it for the worker of its mailbox without
// blocking; when that queue is full the newest request of the mailbox
// holding the most of it is dropped and counted (workers.go), as a
// congested link would lose it.
func (n *Node) Handle(payload []byte) {
	b := make([]byte, len(payload))
	copy(b, payload)
	id := requestMailbox(b)
	if n.in[pick(n.seed, id, len(n.in))].add(id, b) {
		n.m.dropped.WithLabelValues("busy").Inc()
	}
}

// requestMailbox is the mailbox id of a padded request, which follows the
// length prefix (2), version and op; the zero id if it is too short.
func requestMailbox(b []byte) ID {
	var id ID
	if len(b) >= 4+IDSize {
		copy(id[:], b[4:])
	}
	return id
}

// queued is how many requests wait for the worker of mailbox id.
func (n *Node) queued(id ID) int { return n.in[pick(n.seed, id, len(n.in))].len() }

// Run handles requests and sweeps expired messages and SURBs until ctx
// ends.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer n.flushMarks() // what the workers pushed last
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-n.kick:
				n.flushMarks()
			}
		}
	})
	for _, in := range n.in {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-in.ready:
				}
				for ctx.Err() == nil {
					b, ok := in.next()
					if !ok {
						break
					}
					n.handle(b)
				}
			}
		})
	}
	sweep := time.NewTicker(n.cfg.SweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sweep.C:
			n.sweep()
		}
	}
}

// sweep expires old messages and drops SURBs of past epochs.
func (n *Node) sweep() {
	if k, err := n.cfg.Store.Expire(n.cfg.Now()); err != nil {
		n.log.Warn("mailbox retention sweep", "err", err)
	} else if k > 0 {
		n.log.Debug("mailbox retention sweep", "expired", k)
	}
	e := n.cfg.Epoch()
	n.mu.Lock()
	for id := range n.stock {
		n.fresh(id, e)
	}
	n.m.surbs.Set(float64(n.total))
	n.mu.Unlock()
	n.kickFlush()
}

// handle executes one request.
func (n *Node) handle(msg []byte) {
	body, err := client.Unpad(msg)
	if err != nil {
		n.m.dropped.WithLabelValues("malformed").Inc()
		return
	}
	req, signed, err := n.codec.DecodeRequest(body)
	if err != nil {
		n.m.dropped.WithLabelValues("malformed").Inc()
		n.log.Debug("malformed mailbox request", "err", err)
		return
	}
	n.m.requests.WithLabelValues(opName(req.Op)).Inc()
	// A request's SURBs are for this request's answer first; the rest
	// join the stock (Create, Stock and Fetch) or are dropped.
	answer := func(r *Response) {
		if len(req.SURBs) == 0 {
			return
		}
		s := req.SURBs[0]
		req.SURBs = req.SURBs[1:]
		n.reply(s, r)
	}
	refuse := func(code ErrorCode, text string) {
		n.m.dropped.WithLabelValues(codeName(code)).Inc()
		answer(&Response{Op: OpError, Mailbox: req.Mailbox, For: req.Op, Code: code, Text: text})
	}
	if req.Op.signed() {
		if code, text := n.authorize(req, signed); code != 0 {
			refuse(code, text)
			return
		}
	}
	switch req.Op {
	case OpCreate:
		n.create(req, answer, refuse)
	case OpPut:
		if len(req.Message) > n.codec.MaxSize-DeliverOverhead {
			// It could never be delivered.
			refuse(CodeMalformed, "message too large")
			return
		}
		if !n.putAllowed(req, signed) {
			// Not enough work (or an unknown put scheme): refused
			// before the store is read, whether or not the mailbox
			// exists (work.go).
			n.m.dropped.WithLabelValues("work").Inc()
			answer(&Response{Op: OpError, Mailbox: req.Mailbox, For: req.Op, Code: CodeRefused, Text: "refused"})
			return
		}
		id, err := n.cfg.Store.PutChecked(req.Mailbox, req.Type, req.Message, n.cfg.Now())
		switch {
		case errors.Is(err, ErrNoMailbox):
			// Answered as a stored message (its id is SHA-256 of the
			// message, which the sender knows), after the same batched
			// commit a stored one waits for: a put does not tell
			// whether the mailbox exists (docs/mailbox.md).
			n.m.dropped.WithLabelValues("no_mailbox").Inc()
			answer(&Response{Op: OpOK, Mailbox: req.Mailbox, For: OpPut, Detail: id[:]})
			return
		case errors.Is(err, ErrQuota):
			refuse(CodeQuota, "mailbox full")
			return
		case err != nil:
			n.log.Warn("mailbox put", "err", err)
			refuse(CodeInternal, "storage failure")
			return
		}
		// Stored and fsynced: now it may be acknowledged.
		n.m.stored.Inc()
		answer(&Response{Op: OpOK, Mailbox: req.Mailbox, For: OpPut, Detail: id[:]})
		n.push(req.Mailbox, 0, false)
	case OpStock:
		n.addStock(req.Mailbox, req.Epoch, req.SURBs)
		n.push(req.Mailbox, 0, false)
	case OpFetch:
		n.addStock(req.Mailbox, req.Epoch, req.SURBs)
		n.push(req.Mailbox, req.After, true)
	case OpDelete:
		f := new(DeletionFilter)
		if err := f.UnmarshalBinary(req.Filter); err != nil {
			refuse(CodeMalformed, "bad filter")
			return
		}
		n.flushMarks() // only delivered messages may be deleted
		if _, err := n.cfg.Store.Delete(req.Mailbox, f); err != nil {
			n.log.Warn("mailbox delete", "err", err)
		}
	}
	n.mu.Lock()
	n.m.surbs.Set(float64(n.total))
	n.mu.Unlock()
}

// create executes a create request. The mailbox id must be the one its
// type, plug-in, credential and salt derive to (DeriveID): anyone else's
// create is refused before the store is read, so it tells nothing about
// whether the id exists. A create of an existing mailbox with the same
// enrolment (the owner asking again after a lost answer) is answered OK.
func (n *Node) create(req *Request, answer func(*Response), refuse func(ErrorCode, string)) {
	if DeriveID(req.Type, req.Plugin, req.Credential, req.Salt) != req.Mailbox {
		refuse(CodeRefused, "refused")
		return
	}
	a, ok := n.auth[req.Plugin]
	if !ok {
		refuse(CodeRefused, "refused")
		return
	}
	stored, err := a.Enroll(req.Credential)
	if err != nil {
		refuse(CodeRefused, "refused")
		return
	}
	enrol := append([]byte{req.Plugin}, stored...)
	switch err := n.cfg.Store.Create(req.Mailbox, req.Type, enrol); {
	case errors.Is(err, ErrExists):
		typ, have, err := n.cfg.Store.Auth(req.Mailbox)
		if err != nil || typ != req.Type || !bytes.Equal(have, enrol) {
			refuse(CodeRefused, "refused")
			return
		}
	case err != nil:
		n.log.Warn("mailbox create", "err", err)
		refuse(CodeInternal, "storage failure")
		return
	}
	// The stock is on disk before the answer leaves.
	s := req.SURBs
	if len(s) > 0 {
		req.SURBs = s[:1]
		n.addStock(req.Mailbox, req.Epoch, s[1:])
	}
	answer(&Response{Op: OpOK, Mailbox: req.Mailbox, For: OpCreate})
}

// putAllowed reports whether a Put carries the work the node requires:
// scheme 0 only when PutWork is 0, WorkScheme with a proof of PutWork
// bits. It reads nothing but the request (two hashes).
func (n *Node) putAllowed(req *Request, signed []byte) bool {
	switch req.Scheme {
	case 0:
		return n.cfg.PutWork == 0
	case WorkScheme:
		return VerifyWork(req.Mailbox, signed, req.Auth, n.cfg.PutWork) == nil
	}
	return false
}

// dummyKey is what a signed request for an unknown mailbox is verified
// against, so that it costs the node the same verification as one for a
// mailbox that exists.
var dummyKey = make([]byte, 32)

// authorize checks a signed request: a fresh time, a known mailbox of the
// request's type, the mailbox's scheme and a valid authorization by its
// enrolled credential. Unknown mailboxes, another type and bad signatures
// get the same answer after the same work (a signature verification), so
// nobody learns whether a mailbox exists.
func (n *Node) authorize(req *Request, signed []byte) (ErrorCode, string) {
	now := n.cfg.Now()
	t := time.Unix(int64(req.Time), 0)
	if t.Before(now.Add(-ClockSkew)) || t.After(now.Add(ClockSkew)) {
		return CodeStale, "request time too far from the node's clock"
	}
	typ, enrol, err := n.cfg.Store.Auth(req.Mailbox)
	if err != nil || len(enrol) == 0 || typ != req.Type || enrol[0] != req.Scheme {
		_ = Ed25519Auth{}.Verify(dummyKey, signed, req.Auth)
		return CodeRefused, "refused"
	}
	a, ok := n.auth[enrol[0]]
	if !ok || a.Verify(enrol[1:], signed, req.Auth) != nil {
		return CodeRefused, "refused"
	}
	return 0, ""
}

// push sends id's messages through its stock: those not yet delivered, or
// with all set (a fetch) every message after seq after. It packs as many
// messages as fit in each reply, spends no SURB of the reserve, and when
// the stock falls under the low-water mark spends one reserved SURB on a
// NeedSURBs (once per stocking).
func (n *Node) push(id ID, after uint64, all bool) {
	n.gate.RLock()
	var msgs []Message
	var err error
	if all {
		msgs, err = n.cfg.Store.Fetch(id, after, pushScan)
	} else {
		msgs, err = n.cfg.Store.Undelivered(id, pushScan)
	}
	if err != nil {
		n.gate.RUnlock()
		if !errors.Is(err, ErrNoMailbox) {
			n.log.Warn("mailbox fetch", "err", err)
		}
		return
	}
	if !all {
		k := 0
		for _, m := range msgs {
			if !n.marked(id, m.Seq) {
				msgs[k] = m
				k++
			}
		}
		msgs = msgs[:k]
	}
	n.gate.RUnlock()
	room := n.codec.MaxSize - DeliverOverhead
	for len(msgs) > 0 {
		var batch []Message
		size := 0
		for len(msgs) > 0 {
			m := msgs[0]
			need := len(m.Data) + 8 + 2
			if len(batch) > 0 && size+need > room {
				break
			}
			batch = append(batch, m)
			size += need
			msgs = msgs[1:]
		}
		if len(batch) == 0 {
			break
		}
		surb, _, ok := n.take(id, n.cfg.Reserve)
		if !ok {
			break
		}
		if !n.reply(surb, &Response{Op: OpDeliver, Mailbox: id, Messages: batch}) {
			continue
		}
		n.mark(id, batch)
		n.m.pushed.Add(float64(len(batch)))
	}
	n.askForMore(id)
}

// mark records that batch was pushed, for the flusher to write.
func (n *Node) mark(id ID, batch []Message) {
	n.markMu.Lock()
	m := n.marks[id]
	if m == nil {
		m = map[uint64]bool{}
		n.marks[id] = m
	}
	for _, msg := range batch {
		m[msg.Seq] = true
	}
	n.markMu.Unlock()
	n.kickFlush()
}

// kickFlush wakes the flusher.
func (n *Node) kickFlush() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// marked reports whether message seq of id was pushed and its mark is not
// on disk yet.
func (n *Node) marked(id ID, seq uint64) bool {
	n.markMu.Lock()
	defer n.markMu.Unlock()
	return n.marks[id][seq]
}

// flushMarks writes the pending delivered marks and removes the spent and
// expired SURBs from the store in one transaction. A mark lost to a crash
// costs nothing but a message that stays until the next fetch delivers
// (and marks) it again; a removal lost to a crash puts a spent SURB back in
// the stock after the restart, whose reply the first relay's replay check
// drops (the message it carried is fetched again).
func (n *Node) flushMarks() {
	n.markMu.Lock()
	if len(n.marks) == 0 && len(n.spent) == 0 {
		n.markMu.Unlock()
		return
	}
	todo := make(map[ID][]uint64, len(n.marks))
	for id, m := range n.marks {
		for seq := range m {
			todo[id] = append(todo[id], seq)
		}
	}
	spent := n.spent
	n.spent = nil
	n.markMu.Unlock()
	if err := n.cfg.Store.Flush(todo, spent); err != nil {
		n.log.Warn("mailbox mark delivered", "err", err)
		n.markMu.Lock()
		n.spent = append(n.spent, spent...)
		n.markMu.Unlock()
		return
	}
	n.gate.Lock()
	defer n.gate.Unlock()
	n.markMu.Lock()
	for id, seqs := range todo {
		m := n.marks[id]
		for _, seq := range seqs {
			delete(m, seq)
		}
		if len(m) == 0 {
			delete(n.marks, id)
		}
	}
	n.markMu.Unlock()
}

// askForMore spends a reserved SURB on NeedSURBs when the stock is low.
func (n *Node) askForMore(id ID) {
	n.mu.Lock()
	s := n.fresh(id, n.cfg.Epoch())
	low := len(s) < n.cfg.LowWater && len(s) > 0 && !n.asked[id]
	if low {
		n.asked[id] = true
	}
	n.mu.Unlock()
	if !low {
		return
	}
	surb, left, ok := n.take(id, 0)
	if !ok {
		return
	}
	n.reply(surb, &Response{Op: OpNeedSURBs, Mailbox: id, Stock: uint16(left)})
}

// reply sends r through the encoded SURB s, if its first hop is a
// first-stratum relay (send.go); it never waits on the link.
func (n *Node) reply(s []byte, r *Response) bool {
	surb, err := n.cfg.Format.DecodeSURB(s)
	if err != nil {
		n.m.dropped.WithLabelValues("bad_surb").Inc()
		return false
	}
	if !n.cfg.FirstHop(surb.FirstHop) {
		n.m.dropped.WithLabelValues("first_hop").Inc()
		n.log.Debug("mailbox reply refused: first hop not in the first stratum", "to", surb.FirstHop)
		return false
	}
	body, err := n.codec.EncodeResponse(r)
	if err != nil {
		n.log.Warn("mailbox response", "err", err)
		return false
	}
	pkt, err := n.cfg.Format.NewReply(surb, client.Pad(n.cfg.Format.Geometry().PayloadCapacity(), body))
	if err != nil {
		n.log.Warn("mailbox reply packet", "err", err)
		return false
	}
	if err := n.send(surb.FirstHop, pkt); err != nil {
		n.log.Debug("mailbox reply not sent", "to", surb.FirstHop, "err", err)
		return false
	}
	n.m.replies.WithLabelValues(opName(r.Op)).Inc()
	return true
}

func opName(op Op) string {
	switch op {
	case OpCreate:
		return "create"
	case OpPut:
		return "put"
	case OpStock:
		return "stock"
	case OpFetch:
		return "fetch"
	case OpDelete:
		return "delete"
	case OpOK:
		return "ok"
	case OpDeliver:
		return "deliver"
	case OpNeedSURBs:
		return "need_surbs"
	case OpError:
		return "error"
	}
	return fmt.Sprintf("op%d", op)
}

func codeName(c ErrorCode) string {
	switch c {
	case CodeMalformed:
		return "malformed"
	case CodeRefused:
		return "refused"
	case CodeQuota:
		return "quota"
	case CodeExists:
		return "exists"
	case CodeStale:
		return "stale"
	case CodeInternal:
		return "internal"
	}
	return fmt.Sprintf("code%d", c)
}
