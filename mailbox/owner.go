package mailbox

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/sphinx"
)

// Mixnet is what the client side of the mailbox protocol needs of a mix
// client (client.Client implements it).
type Mixnet interface {
	Send(ctx context.Context, d client.Destination, payload []byte) (client.Sent, error)
	NewSURB(ctx context.Context) (client.SURB, error)
	PayloadSize() int
}

// CodecFor returns the codec of requests and responses carried by packets
// of geometry g.
func CodecFor(g sphinx.Geometry) Codec {
	return Codec{SURBSize: g.SURBSize(), MaxSize: g.PayloadCapacity() - 2}
}

// Put sends message to mailbox id at mailbox node node, with one SURB for
// the node's answer (OpOK with the message id once it is stored and
// fsynced, or OpError). It returns the SURB's id so the caller can match
// the answer (see Owner.Handle and DecodeAnswer).
func Put(ctx context.Context, mix Mixnet, codec Codec, node sphinx.NodeID, id ID, typ Type, message []byte) (sphinx.SURBID, error) {
	return PutWithWork(ctx, mix, codec, node, id, typ, message, Work{})
}

// PutWithWork is Put with the proof of work w (work.go) that the mailbox
// node requires; it fails with ErrWork, or ctx's error, if the work is not
// found within w's cap.
func PutWithWork(ctx context.Context, mix Mixnet, codec Codec, node sphinx.NodeID, id ID, typ Type, message []byte, w Work) (sphinx.SURBID, error) {
	surb, err := mix.NewSURB(ctx)
	if err != nil {
		return sphinx.SURBID{}, err
	}
	b, err := codec.EncodeRequest(&Request{Op: OpPut, Mailbox: id, Type: typ, SURBs: [][]byte{surb.Bytes}, Message: message, Scheme: w.scheme()}, w.Worker(ctx, id))
	if err != nil {
		return sphinx.SURBID{}, err
	}
	if _, err := mix.Send(ctx, client.ToMailbox(node), b); err != nil {
		return sphinx.SURBID{}, err
	}
	return surb.ID, nil
}

// MaxPut returns the largest message Put (or PutWithWork) can carry.
func MaxPut(codec Codec) int {
	// version, op, mailbox, type, SURB count and one SURB, message
	// length; the auth trailer with a work nonce.
	return codec.MaxSize - (1 + 1 + IDSize + 2 + 1 + codec.SURBSize + 2 + authOverhead + WorkNonceSize)
}

// OwnerConfig configures the owner's side of one mailbox.
type OwnerConfig struct {
	Mix   Mixnet
	Codec Codec
	// Node is the mailbox node; ID the mailbox; Key its auth key (the
	// node knows the public half, not who holds it).
	// ID may be left zero: it is then the id the enrolment derives to
	// (DeriveID), the only id the node creates for it; Salt is the salt
	// of that derivation (zero by default).
	Node sphinx.NodeID
	ID   ID
	Type Type
	Salt Salt
	Key  ed25519.PrivateKey
	// Auth, if set, authorizes the owner's requests instead of Key (any
	// auth plug-in's owner side); default Ed25519Owner(Key).
	Auth OwnerAuth
	// Stock is how many SURBs the owner keeps at the node; default 8.
	Stock int
	// FetchEvery is the mean time between the owner's fetches of what it
	// may have missed (pushes lost, node restarted); default 30s. Each
	// wait is drawn afresh (jitter.go), so the node sees no fixed period.
	FetchEvery time.Duration
	// DeleteEvery, if positive, is the mean time between Run's requests
	// that the node delete the messages handed out on Messages (Delete),
	// drawn as FetchEvery's; otherwise the caller calls Delete when its
	// application has kept what it received.
	DeleteEvery time.Duration
	// Epoch returns the current key epoch: the owner re-stocks when it
	// changes, since SURBs die with their epoch.
	Epoch func() uint64
	// Home returns the client's home relay: the owner re-stocks when it
	// changes, since the SURBs at the node name the old home. The node
	// spends the newest SURBs first, so pushes go to the new home at once.
	// Default: Mix's Home method if it has one (client.Client does).
	Home func() sphinx.NodeID
	// Dedup, if set, is shared by the owners of all of one user's
	// mailboxes (on one node or several): a message put into more than one
	// of them is delivered by the first owner that receives it only.
	Dedup  *Dedup
	Logger *slog.Logger
}

// A Dedup remembers the ids of the last messages the owners sharing it
// delivered (OwnerConfig.Dedup), so that a message a sender put into
// several mailboxes of one user reaches the user once. It is bounded: a
// copy arriving after more than its capacity of other messages is
// delivered again (the layers above drop it: the queue by message id, MLS
// by generation). Safe for concurrent use.
type Dedup struct {
	mu   sync.Mutex
	seen map[MessageID]struct{}
	ring []MessageID // the remembered ids, oldest at next once full
	next int
}

// DefaultDedup is the capacity NewDedup uses for n <= 0: a week of a busy
// user's messages, 32 bytes each (about 4 MiB with the map).
const DefaultDedup = 1 << 16

// NewDedup returns a Dedup remembering the last n message ids.
func NewDedup(n int) *Dedup {
	if n <= 0 {
		n = DefaultDedup
	}
	return &Dedup{seen: make(map[MessageID]struct{}, n), ring: make([]MessageID, 0, n)}
}

// First reports whether id was not seen before (among the last ids
// remembered), and remembers it.
func (d *Dedup) First(id MessageID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[id]; ok {
		return false
	}
	if len(d.ring) < cap(d.ring) {
		d.ring = append(d.ring, id)
	} else {
		delete(d.seen, d.ring[d.next])
		d.ring[d.next] = id
		d.next = (d.next + 1) % len(d.ring)
	}
	d.seen[id] = struct{}{}
	return true
}

// OwnerAuth is the owner's side of an auth plug-in: what it enrols with
// and how it authorizes its signed requests.
type OwnerAuth interface {
	// Scheme is the plug-in's id (Authenticator.ID).
	Scheme() byte
	// Credential is what a create request enrols.
	Credential() []byte
	// Size is the size of the authorizations Authorize returns (requests
	// are sized with it).
	Size() int
	// Authorize returns the authorization of msg (SignedBytes).
	Authorize(msg []byte) ([]byte, error)
}

// Ed25519Owner is the owner side of Ed25519Auth.
func Ed25519Owner(key ed25519.PrivateKey) OwnerAuth { return ed25519Owner{key} }

type ed25519Owner struct{ key ed25519.PrivateKey }

func (ed25519Owner) Scheme() byte         { return Ed25519Auth{}.ID() }
func (o ed25519Owner) Credential() []byte { return o.key.Public().(ed25519.PublicKey) }
func (ed25519Owner) Size() int            { return ed25519.SignatureSize }
func (o ed25519Owner) Authorize(msg []byte) ([]byte, error) {
	return ed25519.Sign(o.key, msg), nil
}

// Owner keeps a mailbox stocked with SURBs and receives what its node
// pushes through them.
type Owner struct {
	cfg       OwnerConfig
	log       *slog.Logger
	msgs      chan Message
	perDelete int // ids one deletion request carries (maxDeleteIDs)

	mu sync.Mutex
	// have is the highest sequence number up to which every message was
	// received; got the received ones above it. A fetch asks for what
	// follows have, so a push lost on the way is fetched again even when
	// later ones arrived.
	have    uint64
	got     map[uint64]bool
	seen    *Dedup            // delivered on Messages (bounded)
	del     map[MessageID]int // handed out, to delete: filters they went in
	epoch   uint64
	home    sphinx.NodeID
	restock chan struct{}
	gap     chan struct{} // a message arrived with one missing before it
	created chan struct{} // the node answered a create
}

// gapWait is how long the owner waits for a missing message (pushes take
// different routes, so they arrive out of order) before fetching it.
const gapWait = 2 * time.Second

// NewOwner returns the owner side of a mailbox; Create makes the mailbox,
// Run keeps it stocked.
func NewOwner(cfg OwnerConfig) *Owner {
	if cfg.Stock <= 0 {
		cfg.Stock = 8
	}
	if cfg.FetchEvery <= 0 {
		cfg.FetchEvery = 30 * time.Second
	}
	if cfg.Auth == nil {
		cfg.Auth = Ed25519Owner(cfg.Key)
	}
	if cfg.ID == (ID{}) {
		cfg.ID = DeriveID(cfg.Type, cfg.Auth.Scheme(), cfg.Auth.Credential(), cfg.Salt)
	}
	if h, ok := cfg.Mix.(interface{ Home() sphinx.NodeID }); ok && cfg.Home == nil {
		cfg.Home = h.Home
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Owner{cfg: cfg, log: log, msgs: make(chan Message, 256), got: map[uint64]bool{}, seen: NewDedup(0), del: map[MessageID]int{},
		perDelete: maxDeleteIDs(cfg.Codec, cfg.Auth.Size()), restock: make(chan struct{}, 1), gap: make(chan struct{}, 1), created: make(chan struct{}, 1)}
}

// Messages returns the messages the node delivers, each once.
func (o *Owner) Messages() <-chan Message { return o.msgs }

// ID is the mailbox's id.
func (o *Owner) ID() ID { return o.cfg.ID }

// surbsPerRequest is how many SURBs fit in a signed fetch request (the
// largest fixed part of the requests that carry SURBs).
func (o *Owner) surbsPerRequest() int {
	room := o.cfg.Codec.MaxSize - (1 + 1 + IDSize + 2 + 8 + 8 + 8 + 1 + authOverhead + o.cfg.Auth.Size())
	return max(1, room/o.cfg.Codec.SURBSize)
}

// surbs makes n SURBs and returns them with the oldest key epoch among
// them (a request names one epoch; naming the oldest never makes the node
// keep a SURB past its keys).
func (o *Owner) surbs(ctx context.Context, n int) ([][]byte, uint64, error) {
	out := make([][]byte, 0, n)
	var epoch uint64
	for i := range n {
		s, err := o.cfg.Mix.NewSURB(ctx)
		if err != nil {
			return nil, 0, err
		}
		if i == 0 || s.Epoch < epoch {
			epoch = s.Epoch
		}
		out = append(out, s.Bytes)
	}
	return out, epoch, nil
}

// TimeGranularity is what owners round their signed requests' times down
// to, so the times tell the node nothing finer about the owner's clock or
// the moment a request was made than the node's acceptance window
// (ClockSkew) already allows: a request is accepted with an owner clock up
// to ClockSkew − TimeGranularity slow or ClockSkew fast.
const TimeGranularity = 5 * time.Minute

// coarseTime is t rounded down to TimeGranularity, in unix seconds.
func coarseTime(t time.Time) uint64 {
	return uint64(t.Truncate(TimeGranularity).Unix())
}

func (o *Owner) send(ctx context.Context, r *Request) error {
	r.Mailbox, r.Type = o.cfg.ID, o.cfg.Type
	if r.Op.signed() {
		r.Time = coarseTime(time.Now())
		r.Scheme = o.cfg.Auth.Scheme()
	}
	b, err := o.cfg.Codec.EncodeRequest(r, o.cfg.Auth.Authorize)
	if err != nil {
		return err
	}
	_, err = o.cfg.Mix.Send(ctx, client.ToMailbox(o.cfg.Node), b)
	return err
}

// createAttempts bounds how often Create asks before giving up;
// createCopies is how many requests each attempt sends, so that one lost
// packet costs no backoff round (the node answers the spare copies OK:
// a create of the same enrolment is idempotent). The wait between attempts starts
// at createWait and doubles up to createMaxWait: a round trip passes seven
// relays, so at 20 % loss per relay one copy in five comes back, and an
// uncapped backoff once took over two minutes to create a mailbox (three
// copies: an attempt succeeds with probability 0.5 there; twelve attempts
// fail together with probability 2e-4, within 90 s).
const (
	createAttempts = 12
	createCopies   = 3
	createWait     = 2 * time.Second
	createMaxWait  = 8 * time.Second
)

// Create makes the mailbox at its node, enrolled with the owner's key, and
// hands the node its first SURBs. It waits for the node's answer (Handle
// must be receiving the client's replies), asking again with exponential
// backoff when a request or its answer is lost; the node answers a create
// of an existing mailbox with the same enrolment OK (an earlier attempt's
// answer was lost). The owner's ID must be the one its enrolment derives
// to (DeriveID), or the node refuses.
func (o *Owner) Create(ctx context.Context) error {
	a := o.cfg.Auth
	if id := DeriveID(o.cfg.Type, a.Scheme(), a.Credential(), o.cfg.Salt); id != o.cfg.ID {
		return fmt.Errorf("mailbox: id %v is not the one the key derives to (%v): the node would refuse it", o.cfg.ID, id)
	}
	wait := createWait
	for range createAttempts {
		for range createCopies {
			surbs, epoch, err := o.surbs(ctx, o.surbsPerRequest()-1)
			if err != nil {
				return err
			}
			if err := o.send(ctx, &Request{Op: OpCreate, Plugin: a.Scheme(), Credential: a.Credential(), Salt: o.cfg.Salt, Epoch: epoch, SURBs: surbs}); err != nil {
				return err
			}
		}
		select {
		case <-o.created:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
			wait = min(2*wait, createMaxWait)
		}
	}
	return fmt.Errorf("mailbox: no answer to create after %d attempts", createAttempts)
}

// Stock sends the node n fresh SURBs, in as many requests as needed.
func (o *Owner) Stock(ctx context.Context, n int) error {
	for n > 0 {
		k := min(n, o.surbsPerRequest())
		surbs, epoch, err := o.surbs(ctx, k)
		if err != nil {
			return err
		}
		if err := o.send(ctx, &Request{Op: OpStock, Epoch: epoch, SURBs: surbs}); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Fetch asks for every message after the first one missing, with fresh
// SURBs to carry them; duplicates are dropped on arrival.
func (o *Owner) Fetch(ctx context.Context) error {
	o.mu.Lock()
	after := o.have
	o.mu.Unlock()
	surbs, epoch, err := o.surbs(ctx, o.surbsPerRequest())
	if err != nil {
		return err
	}
	return o.send(ctx, &Request{Op: OpFetch, After: after, Epoch: epoch, SURBs: surbs})
}

// deleteRepeats is how many deletion filters name each received message:
// the node does not answer deletions, so a filter lost on the way is
// covered by the next ones. Then the owner forgets the id, so the filters
// stay small however long the owner runs.
const deleteRepeats = 3

// deleteFP is the false-positive rate deletion filters are sized for
// (docs/mailbox.md).
const deleteFP = 1e-6

// Delete asks the node to delete the messages handed out on Messages,
// naming each in deleteRepeats successive calls, in as many deletion
// filters (false positives: docs/mailbox.md) as requests need.
func (o *Owner) Delete(ctx context.Context) error {
	o.mu.Lock()
	ids := make([]MessageID, 0, len(o.del))
	for id := range o.del {
		ids = append(ids, id)
	}
	o.mu.Unlock()
	if len(ids) > 0 && o.perDelete == 0 {
		return fmt.Errorf("mailbox: a deletion filter does not fit a %d-byte request", o.cfg.Codec.MaxSize)
	}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), o.perDelete)]
		ids = ids[len(batch):]
		f, err := NewDeletionFilter(rand.Reader, len(batch), deleteFP)
		if err != nil {
			return err
		}
		for _, id := range batch {
			f.Add(id)
		}
		b, err := f.MarshalBinary()
		if err != nil {
			return err
		}
		if err := o.send(ctx, &Request{Op: OpDelete, Filter: b}); err != nil {
			return err
		}
		o.mu.Lock()
		for _, id := range batch {
			if o.del[id]++; o.del[id] >= deleteRepeats {
				delete(o.del, id)
			}
		}
		o.mu.Unlock()
	}
	return nil
}

// maxDeleteIDs is how many ids one deletion request of codec, signed with
// authSize bytes, can carry (0: not even one).
func maxDeleteIDs(codec Codec, authSize int) int {
	// version, op, mailbox, type, time, filter length; then the auth
	// trailer.
	room := codec.MaxSize - (1 + 1 + IDSize + 2 + 8 + 2 + authOverhead + authSize)
	fits := func(n int) bool {
		f, err := NewDeletionFilter(zeroReader{}, n, deleteFP)
		if err != nil {
			return false
		}
		b, err := f.MarshalBinary()
		return err == nil && len(b) <= room
	}
	if !fits(1) {
		return 0
	}
	lo, hi := 1, 2 // fits(lo), and hi is the first n that does not (once found)
	for fits(hi) {
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// zeroReader reads zeros: sizing filters needs no salt.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Handle takes a reply payload (from the mix client's Receive) and reports
// whether it was an answer from this mailbox's node.
func (o *Owner) Handle(ctx context.Context, payload []byte) bool {
	r, err := o.cfg.Codec.DecodeResponse(payload)
	if err != nil || r.Mailbox != o.cfg.ID {
		return false
	}
	switch r.Op {
	case OpDeliver:
		for _, m := range r.Messages {
			m.ID = MessageIDOf(m.Data)
			o.mu.Lock()
			dup := !o.seen.First(m.ID)
			if m.Seq > o.have {
				o.got[m.Seq] = true
				for o.got[o.have+1] {
					delete(o.got, o.have+1)
					o.have++
				}
				if len(o.got) > 0 {
					select {
					case o.gap <- struct{}{}:
					default:
					}
				}
			}
			o.mu.Unlock()
			if dup || (o.cfg.Dedup != nil && !o.cfg.Dedup.First(m.ID)) {
				continue
			}
			select {
			case o.msgs <- m:
				// Handed out: from now on it may be deleted at the node.
				o.mu.Lock()
				o.del[m.ID] = 0
				o.mu.Unlock()
			case <-ctx.Done():
				return true
			}
		}
	case OpNeedSURBs:
		select {
		case o.restock <- struct{}{}:
		default:
		}
	case OpOK:
		if r.For == OpCreate {
			o.signalCreated()
		}
	case OpError:
		if r.For == OpCreate && r.Code == CodeExists {
			// Version-1 nodes answered a repeated create so.
			o.signalCreated()
			break
		}
		o.log.Warn("mailbox node refused a request", "op", opName(r.For), "code", codeName(r.Code), "text", r.Text)
	}
	return true
}

func (o *Owner) signalCreated() {
	select {
	case o.created <- struct{}{}:
	default:
	}
}

// changed reports whether the key epoch or the home relay changed since
// the last call.
func (o *Owner) changed() bool {
	changed := false
	if o.cfg.Epoch != nil {
		if e := o.cfg.Epoch(); e != o.epoch {
			o.epoch, changed = e, true
		}
	}
	if o.cfg.Home != nil {
		if h := o.cfg.Home(); h != o.home {
			o.home, changed = h, true
		}
	}
	return changed
}

// Run keeps the mailbox stocked until ctx ends: it re-stocks when the node
// asks, when the key epoch changes (old SURBs die), when the home relay
// changes (old SURBs lead to the old home) and at every fetch, which also
// collects what pushes may have lost.
func (o *Owner) Run(ctx context.Context) error {
	tick := newJitter(o.cfg.FetchEvery)
	defer tick.Stop()
	changeTick := time.NewTicker(time.Second)
	defer changeTick.Stop()
	o.changed()
	gapTimer := time.NewTimer(time.Hour)
	gapTimer.Stop()
	gapArmed := false
	var deleteTick <-chan time.Time
	var del *jitter
	if o.cfg.DeleteEvery > 0 {
		del = newJitter(o.cfg.DeleteEvery)
		defer del.Stop()
		deleteTick = del.C
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.gap:
			if !gapArmed {
				gapTimer.Reset(gapWait)
				gapArmed = true
			}
		case <-gapTimer.C:
			gapArmed = false
			o.mu.Lock()
			missing := len(o.got) > 0
			o.mu.Unlock()
			if missing {
				err = o.Fetch(ctx)
			}
		case <-o.restock:
			err = o.Stock(ctx, o.cfg.Stock)
		case <-tick.C:
			tick.Next()
			err = o.Fetch(ctx)
		case <-deleteTick:
			del.Next()
			err = o.Delete(ctx)
		case <-changeTick.C:
			if o.changed() {
				err = o.Stock(ctx, o.cfg.Stock)
			}
		}
		if err != nil && ctx.Err() == nil {
			o.log.Warn("mailbox owner", "err", err)
		}
	}
}

// DecodeAnswer decodes a node's answer to a Put: nil when the message was
// stored, the node's refusal otherwise.
func DecodeAnswer(codec Codec, payload []byte) (MessageID, error) {
	r, err := codec.DecodeResponse(payload)
	if err != nil {
		return MessageID{}, err
	}
	switch {
	case r.Op == OpOK && r.For == OpPut && len(r.Detail) == len(MessageID{}):
		return MessageID(r.Detail), nil
	case r.Op == OpError:
		return MessageID{}, fmt.Errorf("mailbox: %s: %s", codeName(r.Code), r.Text)
	}
	return MessageID{}, errors.New("mailbox: not an answer to a put")
}
