package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/e2e"
	"github.com/strata-mix/strata/mailbox"
	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/queue"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// ChatType is the mailbox message type of e2e payloads.
const ChatType mailbox.Type = 2

// Files of a chat user's data directory.
const (
	chatStateFile  = "chat.json"   // mix identity, home, mailbox and its key, chain
	chatStoreFile  = "e2e.db"      // e2e.Store: MLS identity, contacts, rooms, history
	chatAcksFile   = "acks.json"   // which sent messages the recipients' queues acknowledged
	chatQueueFile  = "queue.db"    // the message queue: payloads not yet acknowledged
	chatQueuedFile = "queued.json" // which history entry each queued message belongs to
	chatClientDir  = "client"      // the mix client's SURB database
)

// ChatMaxPayload is the largest e2e payload a Chat delivers (and accepts
// from its queue): package queue chunks it into as many mailbox Puts as it
// needs (a Welcome for a room of five is about 3 KB).
const ChatMaxPayload = 64 << 10

// ErrTooLarge is returned by Deliver for a payload above ChatMaxPayload.
// The Manager refuses them earlier, with e2e.ErrTooLarge, before the room
// changes (e2e.Config.MaxPayload).
var ErrTooLarge = errors.New("node: e2e payload too large")

// ChatConfig configures a chat user (see StartChat).
type ChatConfig struct {
	// DataDir holds everything the user needs to restart: required.
	DataDir string
	// Chain is where the topology comes from. It is stored in DataDir on
	// the first start and may be left zero afterwards.
	Chain ChainConfig
	// Topology, if set, replaces following Chain (a process that already
	// follows the chain shares its cache).
	Topology func() *pki.Topology
	// Passphrase encrypts the e2e store; KDF its key derivation (default
	// e2e.DefaultKDF; tests use cheaper parameters).
	Passphrase string
	KDF        *e2e.KDFParams
	// Name is the display name on the first start.
	Name string
	// Home and Mailbox choose the home relay and the mailbox node on the
	// first start; zero picks at random from the verified topology.
	Home, Mailbox sphinx.NodeID
	// FetchEvery is how often the mailbox is fetched (default 10s).
	FetchEvery time.Duration
	// MaxBackoff caps the wait between two rounds of a message not
	// acknowledged (default 1 min); Deadline is how long it is resent,
	// across restarts, before it counts as failed (default 7 days).
	MaxBackoff, Deadline time.Duration
	// Events is the capacity of the Events channel (default 256); events
	// that do not fit are dropped (and logged).
	Events int
	Logger *slog.Logger
}

// chatState is chat.json.
type chatState struct {
	Identity   string      `json:"identity"` // mix client identity seed, hex
	Home       string      `json:"home"`     // home relay node id, hex
	Mailbox    string      `json:"mailbox"`  // mailbox node id, hex
	MailboxID  string      `json:"mailbox_id"`
	MailboxKey string      `json:"mailbox_key"` // Ed25519 seed, hex
	Created    bool        `json:"created"`
	Chain      ChainConfig `json:"chain"`
}

// EventAcked is the kind of a ChatEvent saying that every recipient's
// queue acknowledged a sent message end to end (Room and Seq name the
// history entry).
const EventAcked e2e.EventKind = "acked"

// StatusAcked is the delivery status after EventAcked.
const StatusAcked e2e.Status = "acked"

// ChatEvent is an e2e event, or an acknowledgement (Kind EventAcked).
type ChatEvent struct {
	e2e.Event
	Seq uint64 // for EventAcked
}

// Chat is one user of end-to-end encrypted chat over the mixnet: a mix
// client, the owner side of the user's mailbox and an e2e.Manager whose
// Transport queues each payload for every recipient's mailbox in a
// MailQueue (package queue: RaptorQ chunks as mailbox Puts, end-to-end
// acks through SURBs, resends until acked, persisted across restarts).
type Chat struct {
	cfg    ChatConfig
	log    *slog.Logger
	state  chatState
	top    func() *pki.Topology
	codec  mailbox.Codec
	c      *client.Client
	owner  *mailbox.Owner
	mq     *MailQueue
	store  *e2e.Store
	m      *e2e.Manager
	events chan ChatEvent
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	sendMu sync.Mutex // one Send at a time, so its history entry is known

	mu     sync.Mutex
	legacy map[string]bool             // "room:seq" acked, from an acks.json of an earlier version
	tracks map[queue.MsgID]*track      // queued messages of a Send, until their outcome
	queued map[queue.MsgID]queuedEntry // queued.json: the tracked messages of known history entries
	closed bool
}

// track follows the queued messages of one Send, one per recipient
// mailbox (guarded by Chat.mu).
type track struct {
	ids    []queue.MsgID // every message queued for the Send
	left   int           // of them, those without an outcome yet
	failed bool          // a Put failed, or the queue gave up on one
	room   e2e.RoomID
	seq    uint64
	known  bool // room and seq are set
}

// queuedEntry is a value of queued.json (keyed by queue message id, hex).
type queuedEntry struct {
	Room string `json:"room"` // hex
	Seq  uint64 `json:"seq"`
}

type trackKey struct{}

// ChatInitialized reports whether dir holds a chat user.
func ChatInitialized(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, chatStateFile))
	return err == nil
}

// StartChat starts (or resumes) the chat user in cfg.DataDir. On the first
// start it makes the mix identity, picks the home relay and the mailbox
// node, creates the mailbox and waits for the node to answer (until ctx
// ends). It runs until Close.
func StartChat(ctx context.Context, cfg ChatConfig) (*Chat, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("node: chat: DataDir is required")
	}
	if cfg.FetchEvery <= 0 {
		cfg.FetchEvery = 10 * time.Second
	}
	if cfg.Events <= 0 {
		cfg.Events = 256
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: chat: %w", err)
	}
	ch := &Chat{cfg: cfg, log: log, codec: mailbox.CodecFor(sphinx.DefaultGeometry()),
		legacy: map[string]bool{}, tracks: map[queue.MsgID]*track{},
		queued: map[queue.MsgID]queuedEntry{}, events: make(chan ChatEvent, cfg.Events)}
	fresh, err := ch.loadState()
	if err != nil {
		return nil, err
	}
	if err := ch.loadAcks(); err != nil {
		return nil, err
	}
	if err := ch.loadQueued(); err != nil {
		return nil, err
	}
	ch.ctx, ch.stop = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			ch.stop()
			ch.wg.Wait()
			if ch.c != nil {
				ch.c.Close()
			}
			if ch.mq != nil {
				ch.mq.Close()
			}
			if ch.store != nil {
				ch.store.Close()
			}
		}
	}()
	ch.top = cfg.Topology
	if ch.top == nil {
		cache, done, err := FollowChain(ch.ctx, ch.state.Chain, filepath.Join(cfg.DataDir, LightDir), time.Second, log.With("node", "light-client"))
		if err != nil {
			return nil, err
		}
		ch.wg.Go(func() { <-done }) // Close returns once the light client's store is closed
		ch.top = cache.Current
	}
	top, err := waitTopology(ctx, ch.top)
	if err != nil {
		return nil, err
	}
	if err := ch.choose(top, fresh); err != nil {
		return nil, err
	}
	if err := ch.saveState(); err != nil {
		return nil, err
	}
	idSeed, _ := hex.DecodeString(ch.state.Identity)
	homeID, _ := parseHex32(ch.state.Home)
	home, _ := top.Relay(sphinx.NodeID(homeID))
	ch.c, err = client.New(ch.ctx, client.Config{Identity: ed25519.NewKeyFromSeed(idSeed), DataDir: filepath.Join(cfg.DataDir, chatClientDir),
		Home: PeerOf(home.NodeInfo), Topology: ch.top, Logger: log.With("part", "client")})
	if err != nil {
		return nil, fmt.Errorf("node: chat: %w", err)
	}
	addr := ch.address()
	kdf := e2e.DefaultKDF
	if cfg.KDF != nil {
		kdf = *cfg.KDF
	}
	ch.store, err = e2e.OpenStore(filepath.Join(cfg.DataDir, chatStoreFile), cfg.Passphrase, kdf)
	if err != nil {
		return nil, fmt.Errorf("node: chat: %w", err)
	}
	boxKey, _ := hex.DecodeString(ch.state.MailboxKey)
	// Every queue chunk is a stored message pushed through one SURB: keep
	// a deep stock.
	ch.owner = mailbox.NewOwner(mailbox.OwnerConfig{Mix: ch.c, Codec: ch.codec, Node: addr.Node, ID: addr.Mailbox, Type: ChatType,
		Key: ed25519.NewKeyFromSeed(boxKey), Stock: MailQueueStock, FetchEvery: cfg.FetchEvery, DeleteEvery: 3 * time.Second,
		Logger: log.With("part", "mailbox"),
		Epoch: func() uint64 {
			if t := ch.top(); t != nil {
				return t.Epoch
			}
			return 0
		}})
	maxBackoff, deadline := cfg.MaxBackoff, cfg.Deadline
	if maxBackoff <= 0 {
		maxBackoff = time.Minute
	}
	if deadline <= 0 {
		deadline = 7 * 24 * time.Hour
	}
	ch.mq, err = OpenMailQueue(MailQueueConfig{Path: filepath.Join(cfg.DataDir, chatQueueFile), Client: ch.c, Owner: ch.owner,
		Codec: ch.codec, Type: ChatType, ForwardDelay: forwardDelay(top), MaxBackoff: maxBackoff, Deadline: deadline,
		MaxMessage: ChatMaxPayload, OnOutcome: ch.outcome, Logger: log.With("part", "queue")})
	if err != nil {
		return nil, fmt.Errorf("node: chat: %w", err)
	}
	ch.dropStale()
	ch.m, err = e2e.Open(e2e.Config{Store: ch.store, Transport: (*chatTransport)(ch), Addresses: []e2e.Address{addr},
		Name: cfg.Name, MaxPayload: ChatMaxPayload, Logger: log.With("part", "e2e")})
	if err != nil {
		return nil, fmt.Errorf("node: chat: %w", err)
	}
	ch.migrateAcks()
	ch.wg.Add(4)
	go func() { defer ch.wg.Done(); ch.mq.Run(ch.ctx) }()
	go func() { defer ch.wg.Done(); ch.dispatch(ch.ctx) }()
	go func() { defer ch.wg.Done(); ch.receive(ch.ctx) }()
	go func() { defer ch.wg.Done(); _ = ch.owner.Run(ch.ctx) }()
	if !ch.state.Created {
		if err := ch.owner.Create(ctx); err != nil {
			return nil, fmt.Errorf("node: chat: create mailbox: %w", err)
		}
		ch.state.Created = true
		if err := ch.saveState(); err != nil {
			return nil, err
		}
		// Create stocked a few SURBs; chunks need many more.
		ch.wg.Go(func() {
			if err := ch.mq.Stock(ch.ctx); err != nil && ch.ctx.Err() == nil {
				ch.log.Warn("mailbox stock", "err", err)
			}
		})
	} else if err := ch.owner.Fetch(ctx); err != nil {
		return nil, fmt.Errorf("node: chat: fetch: %w", err)
	}
	ok = true
	return ch, nil
}

func waitTopology(ctx context.Context, top func() *pki.Topology) (*pki.Topology, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if tp := top(); tp != nil && len(tp.Relays) > 0 && len(tp.Mailboxes) > 0 {
			return tp, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node: chat: no topology with relays and mailboxes: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// loadState reads chat.json, or makes fresh keys; it reports whether the
// user is new.
func (ch *Chat) loadState() (bool, error) {
	b, err := os.ReadFile(filepath.Join(ch.cfg.DataDir, chatStateFile))
	if errors.Is(err, os.ErrNotExist) {
		if err := ch.cfg.Chain.check(); err != nil && ch.cfg.Topology == nil {
			return false, err
		}
		id, err := transport.GenerateIdentity()
		if err != nil {
			return false, err
		}
		_, boxKey, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return false, err
		}
		// The node creates a mailbox only under the id its key
		// derives to (docs/mailbox.md).
		box := mailbox.Ed25519ID(ChatType, boxKey.Public().(ed25519.PublicKey))
		ch.state = chatState{Identity: hex.EncodeToString(id.Seed()), MailboxID: hex.EncodeToString(box[:]),
			MailboxKey: hex.EncodeToString(boxKey.Seed()), Chain: ch.cfg.Chain}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("node: chat: %w", err)
	}
	if err := json.Unmarshal(b, &ch.state); err != nil {
		return false, fmt.Errorf("node: chat: %s: %w", chatStateFile, err)
	}
	s := ch.state
	for _, f := range []struct {
		v string
		n int
	}{{s.Identity, ed25519.SeedSize}, {s.MailboxID, mailbox.IDSize}, {s.MailboxKey, ed25519.SeedSize}} {
		if x, err := hex.DecodeString(f.v); err != nil || len(x) != f.n {
			return false, fmt.Errorf("node: chat: %s is damaged", chatStateFile)
		}
	}
	if len(ch.cfg.Chain.Endpoints()) > 0 {
		ch.state.Chain = ch.cfg.Chain
	} else if err := ch.state.Chain.check(); err != nil && ch.cfg.Topology == nil {
		return false, err
	}
	return false, nil
}

// choose picks (or checks) the home relay and the mailbox node.
func (ch *Chat) choose(top *pki.Topology, fresh bool) error {
	if fresh || ch.state.Mailbox == "" {
		id := ch.cfg.Mailbox
		if id == (sphinx.NodeID{}) {
			id = top.Mailboxes[randN(len(top.Mailboxes))].ID
		} else if _, ok := top.Mailbox(id); !ok {
			return fmt.Errorf("node: chat: mailbox node %x is not in the topology", id[:8])
		}
		ch.state.Mailbox = hex.EncodeToString(id[:])
	}
	if _, err := parseHex32(ch.state.Mailbox); err != nil {
		return fmt.Errorf("node: chat: %s: mailbox: %w", chatStateFile, err)
	}
	home, err := parseHex32(ch.state.Home)
	if err == nil {
		if _, ok := top.Relay(sphinx.NodeID(home)); ok {
			return nil
		}
		if !fresh {
			ch.log.Warn("home relay left the topology; picking another", "home", ch.state.Home[:16])
		}
	}
	id := ch.cfg.Home
	if id == (sphinx.NodeID{}) || ch.state.Home != "" {
		id = top.Relays[randN(len(top.Relays))].ID
	} else if _, ok := top.Relay(id); !ok {
		return fmt.Errorf("node: chat: relay %x is not in the topology", id[:8])
	}
	ch.state.Home = hex.EncodeToString(id[:])
	return nil
}

func randN(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0
	}
	return int(v.Int64())
}

func (ch *Chat) saveState() error {
	b, err := json.MarshalIndent(ch.state, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(ch.cfg.DataDir, chatStateFile), b)
}

func writeFileAtomic(path string, b []byte) error {
	if err := writeFileSynced(path, b); err != nil {
		return fmt.Errorf("node: chat: %w", err)
	}
	return nil
}

// loadAcks reads the acks.json of an earlier version (acknowledged
// entries, "room:seq"); migrateAcks moves them into the history.
func (ch *Chat) loadAcks() error {
	b, err := os.ReadFile(filepath.Join(ch.cfg.DataDir, chatAcksFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: chat: %w", err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return fmt.Errorf("node: chat: %s: %w", chatAcksFile, err)
	}
	for _, k := range keys {
		ch.legacy[k] = true
	}
	return nil
}

// migrateAcks records the entries of an old acks.json as acked in the
// history and removes the file.
func (ch *Chat) migrateAcks() {
	if len(ch.legacy) == 0 {
		return
	}
	for k := range ch.legacy {
		i := strings.LastIndexByte(k, ':')
		if i < 0 {
			continue
		}
		room, err1 := hex.DecodeString(k[:i])
		seq, err2 := strconv.ParseUint(k[i+1:], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if err := ch.m.SetStatus(e2e.RoomID(room), seq, StatusAcked); err != nil && !errors.Is(err, e2e.ErrNoEntry) {
			ch.log.Warn("migrating acknowledgements", "err", err)
			return
		}
	}
	if err := os.Remove(filepath.Join(ch.cfg.DataDir, chatAcksFile)); err != nil {
		ch.log.Warn("migrating acknowledgements", "err", err)
		return
	}
	ch.mu.Lock()
	ch.legacy = map[string]bool{}
	ch.mu.Unlock()
}

func ackKey(room e2e.RoomID, seq uint64) string { return fmt.Sprintf("%s:%d", room, seq) }

// loadQueued reads queued.json and tracks again the messages the queue
// still holds from before a restart, so that their outcome updates the
// right history entries (dropStale then forgets those the queue no longer
// holds).
func (ch *Chat) loadQueued() error {
	b, err := os.ReadFile(filepath.Join(ch.cfg.DataDir, chatQueuedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: chat: %w", err)
	}
	var m map[string]queuedEntry
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("node: chat: %s: %w", chatQueuedFile, err)
	}
	type key struct {
		room string
		seq  uint64
	}
	tracks := map[key]*track{}
	for k, e := range m {
		idb, err1 := hex.DecodeString(k)
		room, err2 := hex.DecodeString(e.Room)
		if err1 != nil || err2 != nil || len(idb) != len(queue.MsgID{}) {
			return fmt.Errorf("node: chat: %s is damaged", chatQueuedFile)
		}
		id := queue.MsgID(idb)
		tr := tracks[key{e.Room, e.Seq}]
		if tr == nil {
			tr = &track{room: e2e.RoomID(room), seq: e.Seq, known: true}
			tracks[key{e.Room, e.Seq}] = tr
		}
		tr.ids = append(tr.ids, id)
		tr.left++
		ch.tracks[id] = tr
		ch.queued[id] = e
	}
	return nil
}

// dropStale forgets the entries of queued.json whose message the queue no
// longer holds (a crash came between its outcome and the file's update):
// their history entries keep the status they had.
func (ch *Chat) dropStale() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	n := len(ch.queued)
	for id := range ch.queued {
		if !ch.mq.Queue().Holds(id) {
			if tr := ch.tracks[id]; tr != nil {
				tr.left--
			}
			delete(ch.queued, id)
			delete(ch.tracks, id)
		}
	}
	if len(ch.queued) != n {
		ch.saveQueuedLocked()
	}
}

// saveQueuedLocked writes queued.json; ch.mu is held.
func (ch *Chat) saveQueuedLocked() {
	m := make(map[string]queuedEntry, len(ch.queued))
	for id, e := range ch.queued {
		m[hex.EncodeToString(id[:])] = e
	}
	b, err := json.Marshal(m)
	if err == nil {
		err = writeFileAtomic(filepath.Join(ch.cfg.DataDir, chatQueuedFile), b)
	}
	if err != nil {
		ch.log.Warn("saving queued messages", "err", err)
	}
}

// forwardDelay is MailQueueForwardDelay at the topology's mean hop delay
// (50 ms without one).
func forwardDelay(top *pki.Topology) time.Duration {
	d := 50 * time.Millisecond
	if top != nil && top.Params.MeanDelay > 0 {
		d = top.Params.MeanDelay
	}
	return MailQueueForwardDelay(d)
}

// address is the user's mailbox.
func (ch *Chat) address() e2e.Address {
	var a e2e.Address
	n, _ := parseHex32(ch.state.Mailbox)
	a.Node = n
	id, _ := hex.DecodeString(ch.state.MailboxID)
	copy(a.Mailbox[:], id)
	return a
}

// Manager is the user's e2e state: contacts, rooms, history.
func (ch *Chat) Manager() *e2e.Manager { return ch.m }

// Address is the user's mailbox.
func (ch *Chat) Address() e2e.Address { return ch.address() }

// Home is the home relay's node id.
func (ch *Chat) Home() sphinx.NodeID { return ch.c.Home() }

// Events delivers what arrives: messages, joins, membership changes, and
// acknowledgements of sent messages.
func (ch *Chat) Events() <-chan ChatEvent { return ch.events }

// Card returns the user's contact card as a text code, with fresh key
// packages.
func (ch *Chat) Card() (string, error) {
	c, err := ch.m.Card(4, nil)
	if err != nil {
		return "", fmt.Errorf("node: chat: %w", err)
	}
	return c.Code()
}

// Send encrypts text for a room and queues it for every other member's
// mailbox. It returns the history entry's sequence number; EventAcked
// follows once every member's queue acknowledged it.
func (ch *Chat) Send(ctx context.Context, room e2e.RoomID, text string) (uint64, error) {
	ch.sendMu.Lock()
	defer ch.sendMu.Unlock()
	tr := &track{}
	err := ch.m.Send(context.WithValue(ctx, trackKey{}, tr), room, text)
	hist, herr := ch.m.History(room)
	if err == nil {
		err = herr
	}
	var seq uint64
	found := false
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Outgoing && hist[i].Text == text {
			seq, found = hist[i].Seq, true
			break
		}
	}
	if !found {
		return seq, err
	}
	ch.mu.Lock()
	tr.room, tr.seq, tr.known = room, seq, true
	if tr.left > 0 {
		e := queuedEntry{Room: hex.EncodeToString([]byte(room)), Seq: seq}
		for _, id := range tr.ids {
			if ch.tracks[id] == tr {
				ch.queued[id] = e
			}
		}
		ch.saveQueuedLocked()
	}
	done := tr.left == 0 && len(tr.ids) > 0
	ch.mu.Unlock()
	if done {
		ch.finish(tr)
	}
	return seq, err
}

// Status is a sent entry's delivery status as the history records it
// (queued, sent, acked, failed).
func (ch *Chat) Status(room e2e.RoomID, e e2e.Entry) e2e.Status {
	if !e.Outgoing {
		return ""
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.legacy[ackKey(room, e.Seq)] {
		return StatusAcked
	}
	return e.Status
}

// outcome learns from the queue what became of one queued message.
func (ch *Chat) outcome(o queue.Outcome) {
	ch.mu.Lock()
	tr := ch.tracks[o.ID]
	delete(ch.tracks, o.ID)
	if _, ok := ch.queued[o.ID]; ok {
		delete(ch.queued, o.ID)
		ch.saveQueuedLocked()
	}
	done := false
	if tr != nil {
		tr.left--
		if o.Err != nil {
			tr.failed = true
		}
		done = tr.known && tr.left == 0
	}
	ch.mu.Unlock()
	if o.Err != nil {
		ch.log.Warn("queued message not acknowledged; given up", "err", o.Err)
	}
	if done {
		ch.finish(tr)
	}
}

// finish records the end of tr's messages in the history: acked (with
// EventAcked) when every recipient's queue acknowledged them, else failed.
func (ch *Chat) finish(tr *track) {
	st := StatusAcked
	if tr.failed {
		st = e2e.StatusFailed
	}
	if err := ch.m.SetStatus(tr.room, tr.seq, st); err != nil {
		ch.log.Warn("delivery status", "err", err)
	}
	if st == StatusAcked {
		ch.emit(ChatEvent{Event: e2e.Event{Room: tr.room, Kind: EventAcked}, Seq: tr.seq})
	}
}

func (ch *Chat) emit(ev ChatEvent) {
	select {
	case ch.events <- ev:
	default:
		ch.log.Warn("chat events full; dropped one", "kind", ev.Kind)
	}
}

// QueueStats are the counters of the user's message queue.
func (ch *Chat) QueueStats() queue.Stats { return ch.mq.Queue().Stats() }

// Fetch asks the mailbox node for what it holds (Run does it every
// FetchEvery).
func (ch *Chat) Fetch(ctx context.Context) error { return ch.owner.Fetch(ctx) }

// Flush waits until every queued message was acknowledged (or given up),
// or ctx ends; it returns how many are still on their way. Those are
// resent, after a restart too, until acknowledged or ChatConfig.Deadline.
func (ch *Chat) Flush(ctx context.Context) int {
	return ch.waitQueue(ctx, func(s queue.Stats) int {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		// A tracked message the queue finished whose outcome is not yet
		// taken still counts.
		return max(s.InFlight, len(ch.tracks))
	})
}

// WaitSent waits until every queued message went out at least once (its
// current round of chunks has left), or ctx ends; it returns how many have
// not.
func (ch *Chat) WaitSent(ctx context.Context) int {
	return ch.waitQueue(ctx, func(s queue.Stats) int { return s.Unsent })
}

func (ch *Chat) waitQueue(ctx context.Context, left func(queue.Stats) int) int {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		n := left(ch.mq.Queue().Stats())
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
	}
}

// ErrOffline is what an offline Manager's transport returns.
var ErrOffline = errors.New("node: chat opened offline")

type offlineTransport struct{}

func (offlineTransport) Deliver(context.Context, []e2e.Address, []byte) error { return ErrOffline }

// OpenChatOffline opens a chat user's e2e state without the network (to
// print cards, contacts, rooms and history); anything that must deliver
// fails with ErrOffline. close releases the store.
func OpenChatOffline(cfg ChatConfig) (m *e2e.Manager, close func() error, err error) {
	if !ChatInitialized(cfg.DataDir) {
		return nil, nil, fmt.Errorf("node: chat: %s holds no chat user", cfg.DataDir)
	}
	ch := &Chat{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	if _, err := ch.loadState(); err != nil {
		return nil, nil, err
	}
	if _, err := parseHex32(ch.state.Mailbox); err != nil {
		return nil, nil, fmt.Errorf("node: chat: %s: mailbox not chosen yet", chatStateFile)
	}
	kdf := e2e.DefaultKDF
	if cfg.KDF != nil {
		kdf = *cfg.KDF
	}
	s, err := e2e.OpenStore(filepath.Join(cfg.DataDir, chatStoreFile), cfg.Passphrase, kdf)
	if err != nil {
		return nil, nil, fmt.Errorf("node: chat: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err = e2e.Open(e2e.Config{Store: s, Transport: offlineTransport{}, Addresses: []e2e.Address{ch.address()}, Name: cfg.Name, Logger: log})
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("node: chat: %w", err)
	}
	return m, s.Close, nil
}

// Close stops the user. Messages not yet acknowledged stay in the queue's
// file and are resent after the next start.
func (ch *Chat) Close() error {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return nil
	}
	ch.closed = true
	ch.mu.Unlock()
	ch.stop()
	ch.wg.Wait() // the queue's Run unplugs it from the client
	err := errors.Join(ch.c.Close(), ch.mq.Close(), ch.store.Close())
	if err != nil {
		return fmt.Errorf("node: chat: close: %w", err)
	}
	return nil
}

// chatTransport is the e2e.Transport of a Chat.
type chatTransport Chat

// Deliver queues payload for each mailbox; it returns once the queue has
// it on disk (Deliver's errors are the queue's). The queue sends it as
// chunks, and again until the recipient's queue acknowledges it.
func (t *chatTransport) Deliver(ctx context.Context, to []e2e.Address, payload []byte) error {
	ch := (*Chat)(t)
	if len(payload) > ChatMaxPayload {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(payload), ChatMaxPayload)
	}
	tr, _ := ctx.Value(trackKey{}).(*track)
	var errs []error
	for _, a := range to {
		// Every e2e payload (application message, commit, Welcome) must
		// arrive: Reliable (chat has no typing or presence messages; such
		// would go queue.Fast). ch.mu is held across Put so that the
		// outcome finds the message tracked.
		ch.mu.Lock()
		id, err := ch.mq.PutClass(ctx, sphinx.NodeID(a.Node), mailbox.ID(a.Mailbox), payload, queue.Reliable)
		if err != nil {
			if tr != nil {
				tr.failed = true
			}
			ch.mu.Unlock()
			errs = append(errs, fmt.Errorf("node: chat: %w", err))
			continue
		}
		if tr != nil {
			tr.ids = append(tr.ids, id)
			tr.left++
			ch.tracks[id] = tr
		}
		ch.mu.Unlock()
	}
	return errors.Join(errs...)
}

// dispatch routes the replies the mix client opens: the mailbox node's
// pushes and answers, and the rest (acks of the recipients' queues) to the
// queue.
func (ch *Chat) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-ch.c.Receive():
			if !ch.owner.Handle(ctx, r.Payload) {
				ch.mq.HandleReply(r.Payload)
			}
		}
	}
}

// receive hands what the mailbox delivers to the queue, and the payloads
// it completes to the e2e manager.
func (ch *Chat) receive(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-ch.owner.Messages():
			for _, payload := range ch.mq.HandleStored(msg.Data) {
				evs, err := ch.m.Handle(ctx, payload)
				if err != nil {
					ch.log.Debug("message not taken", "err", err)
				}
				for _, e := range evs {
					ch.emit(ChatEvent{Event: e})
				}
			}
		}
	}
}

// ChatStatuses returns the delivery status function of the chat user in
// dir without starting it (see Chat.Status).
func ChatStatuses(dir string) (func(room e2e.RoomID, e e2e.Entry) e2e.Status, error) {
	ch := &Chat{cfg: ChatConfig{DataDir: dir}, legacy: map[string]bool{}}
	if err := ch.loadAcks(); err != nil {
		return nil, err
	}
	return ch.Status, nil
}
