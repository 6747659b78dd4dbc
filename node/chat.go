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
	"sync"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/e2e"
	"github.com/strata-mix/strata/mailbox"
	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// ChatType is the mailbox message type of e2e payloads.
const ChatType mailbox.Type = 2

// Files of a chat user's data directory.
const (
	chatStateFile = "chat.json" // mix identity, home, mailbox and its key, chain
	chatStoreFile = "e2e.db"    // e2e.Store: MLS identity, contacts, rooms, history
	chatAcksFile  = "acks.json" // which sent messages the mailbox nodes acknowledged
	chatClientDir = "client"    // the mix client's SURB database
)

// ErrTooLarge is returned by Deliver for a payload that does not fit one
// mailbox put. Package queue will chunk such payloads; until then large
// Welcomes (rooms of more than about four members) cannot be delivered.
// The Manager refuses them earlier, with e2e.ErrTooLarge, before the room
// changes (e2e.Config.MaxPayload).
var ErrTooLarge = errors.New("node: e2e payload larger than one mailbox put")

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
	// AckWait is how long a put waits for the node's answer before it is
	// sent again (doubling each time); default 2s plus 20 mean hop delays.
	AckWait time.Duration
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

// EventAcked is the kind of a ChatEvent saying that every mailbox node a
// sent message went to stored it (Room and Seq name the history entry).
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
// Transport puts each payload into every recipient's mailbox, with an
// acknowledgement SURB and resends with exponential backoff.
type Chat struct {
	cfg    ChatConfig
	log    *slog.Logger
	state  chatState
	top    func() *pki.Topology
	codec  mailbox.Codec
	c      *client.Client
	owner  *mailbox.Owner
	store  *e2e.Store
	m      *e2e.Manager
	events chan ChatEvent
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	sendMu sync.Mutex // one Send at a time, so its history entry is known

	mu      sync.Mutex
	pending map[sphinx.SURBID]*put
	acked   map[string]bool // "room:seq"
	dirty   bool            // messages received since the last Delete
	flying  int             // puts not yet acknowledged nor given up
	closed  bool
}

// put is one payload on its way to one mailbox.
type put struct {
	to      e2e.Address
	payload []byte
	track   *track
	surbs   []sphinx.SURBID
	acked   chan struct{}
	once    sync.Once
}

// track follows one Send's puts (guarded by Chat.mu).
type track struct {
	left, total int
	room        e2e.RoomID
	seq         uint64
	known       bool
}

type trackKey struct{}

// ChainFromRPC makes a ChainConfig for a validator's RPC endpoint by trust
// on first use: the root of trust is block 1 as that endpoint reports it.
// Use it only with an endpoint you trust (a local testnet); otherwise give
// the trust root out of band.
func ChainFromRPC(ctx context.Context, rpc string) (ChainConfig, error) {
	c, err := rpchttp.New(rpc)
	if err != nil {
		return ChainConfig{}, fmt.Errorf("node: chain %s: %w", rpc, err)
	}
	h := int64(1)
	b, err := c.Block(ctx, &h)
	if err != nil {
		return ChainConfig{}, fmt.Errorf("node: chain %s: block 1: %w", rpc, err)
	}
	return ChainConfig{RPC: rpc, TrustHeight: 1, TrustHash: hex.EncodeToString(b.BlockID.Hash)}, nil
}

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
		pending: map[sphinx.SURBID]*put{}, acked: map[string]bool{}, events: make(chan ChatEvent, cfg.Events)}
	fresh, err := ch.loadState()
	if err != nil {
		return nil, err
	}
	if err := ch.loadAcks(); err != nil {
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
			if ch.store != nil {
				ch.store.Close()
			}
		}
	}()
	ch.top = cfg.Topology
	if ch.top == nil {
		cache, err := FollowChain(ch.ctx, ch.state.Chain, time.Second, log.With("node", "light-client"))
		if err != nil {
			return nil, err
		}
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
	ch.m, err = e2e.Open(e2e.Config{Store: ch.store, Transport: (*chatTransport)(ch), Addresses: []e2e.Address{addr},
		Name: cfg.Name, MaxPayload: mailbox.MaxPut(ch.codec), Logger: log.With("part", "e2e")})
	if err != nil {
		return nil, fmt.Errorf("node: chat: %w", err)
	}
	boxKey, _ := hex.DecodeString(ch.state.MailboxKey)
	ch.owner = mailbox.NewOwner(mailbox.OwnerConfig{Mix: ch.c, Codec: ch.codec, Node: addr.Node, ID: addr.Mailbox, Type: ChatType,
		Key: ed25519.NewKeyFromSeed(boxKey), FetchEvery: cfg.FetchEvery, Logger: log.With("part", "mailbox"),
		Epoch: func() uint64 {
			if t := ch.top(); t != nil {
				return t.Epoch
			}
			return 0
		}})
	ch.wg.Add(4)
	go func() { defer ch.wg.Done(); ch.dispatch(ch.ctx) }()
	go func() { defer ch.wg.Done(); ch.receive(ch.ctx) }()
	go func() { defer ch.wg.Done(); _ = ch.owner.Run(ch.ctx) }()
	go func() { defer ch.wg.Done(); ch.cleanup(ch.ctx) }()
	if !ch.state.Created {
		if err := ch.owner.Create(ctx); err != nil {
			return nil, fmt.Errorf("node: chat: create mailbox: %w", err)
		}
		ch.state.Created = true
		if err := ch.saveState(); err != nil {
			return nil, err
		}
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
		var box mailbox.ID
		rand.Read(box[:])
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
	if ch.cfg.Chain.RPC != "" {
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
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("node: chat: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("node: chat: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("node: chat: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("node: chat: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("node: chat: %w", err)
	}
	return nil
}

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
		ch.acked[k] = true
	}
	return nil
}

// saveAcksLocked writes acks.json; ch.mu is held.
func (ch *Chat) saveAcksLocked() {
	keys := make([]string, 0, len(ch.acked))
	for k := range ch.acked {
		keys = append(keys, k)
	}
	b, _ := json.Marshal(keys)
	if err := writeFileAtomic(filepath.Join(ch.cfg.DataDir, chatAcksFile), b); err != nil {
		ch.log.Warn("saving acknowledgements", "err", err)
	}
}

func ackKey(room e2e.RoomID, seq uint64) string { return fmt.Sprintf("%s:%d", room, seq) }

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

// Send encrypts text for a room and puts it into every other member's
// mailbox. It returns the history entry's sequence number; EventAcked
// follows once every mailbox node stored it.
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
	if found {
		ch.mu.Lock()
		tr.room, tr.seq, tr.known = room, seq, true
		if tr.total > 0 && tr.left == 0 {
			ch.ackedLocked(tr)
		}
		ch.mu.Unlock()
	}
	return seq, err
}

// Status is a sent entry's delivery status: acked once the mailbox nodes
// stored it, else what e2e recorded (queued, sent, failed).
func (ch *Chat) Status(room e2e.RoomID, e e2e.Entry) e2e.Status {
	if !e.Outgoing {
		return ""
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.acked[ackKey(room, e.Seq)] {
		return StatusAcked
	}
	return e.Status
}

// ackedLocked records that every put of tr was acknowledged.
func (ch *Chat) ackedLocked(tr *track) {
	k := ackKey(tr.room, tr.seq)
	if ch.acked[k] {
		return
	}
	ch.acked[k] = true
	ch.saveAcksLocked()
	ch.emit(ChatEvent{Event: e2e.Event{Room: tr.room, Kind: EventAcked}, Seq: tr.seq})
}

func (ch *Chat) emit(ev ChatEvent) {
	select {
	case ch.events <- ev:
	default:
		ch.log.Warn("chat events full; dropped one", "kind", ev.Kind)
	}
}

// Fetch asks the mailbox node for what it holds (Run does it every
// FetchEvery).
func (ch *Chat) Fetch(ctx context.Context) error { return ch.owner.Fetch(ctx) }

// Flush waits until every put was acknowledged (or given up), or ctx
// ends; it returns how many are still on their way.
func (ch *Chat) Flush(ctx context.Context) int {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ch.mu.Lock()
		n := ch.flying
		ch.mu.Unlock()
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

// Close stops the user; puts still unacknowledged are not resent after a
// restart (package queue will keep them).
func (ch *Chat) Close() error {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return nil
	}
	ch.closed = true
	ch.mu.Unlock()
	ch.stop()
	ch.wg.Wait()
	err := ch.c.Close()
	if e := ch.store.Close(); err == nil {
		err = e
	}
	return err
}

// chatTransport is the e2e.Transport of a Chat.
type chatTransport Chat

// Deliver puts payload into each mailbox: the first put of each now (its
// error is returned), then again with exponential backoff until the node
// acknowledges it or the attempts run out, in the background until the
// Chat closes.
func (t *chatTransport) Deliver(ctx context.Context, to []e2e.Address, payload []byte) error {
	ch := (*Chat)(t)
	if max := mailbox.MaxPut(ch.codec); len(payload) > max {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(payload), max)
	}
	tr, _ := ctx.Value(trackKey{}).(*track)
	var errs []error
	for _, a := range to {
		p := &put{to: a, payload: payload, track: tr, acked: make(chan struct{})}
		if err := ch.putOnce(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		if tr != nil {
			ch.mu.Lock()
			tr.left++
			tr.total++
			ch.mu.Unlock()
		}
		ch.mu.Lock()
		ch.flying++
		ch.mu.Unlock()
		ch.wg.Add(1)
		go func() { defer ch.wg.Done(); ch.resend(ch.ctx, p) }()
	}
	return errors.Join(errs...)
}

// maxPutAttempts bounds how often one payload is put into one mailbox.
const maxPutAttempts = 8

func (ch *Chat) putOnce(ctx context.Context, p *put) error {
	id, err := mailbox.Put(ctx, ch.c, ch.codec, sphinx.NodeID(p.to.Node), mailbox.ID(p.to.Mailbox), ChatType, p.payload)
	if err != nil {
		return fmt.Errorf("node: chat: put: %w", err)
	}
	ch.mu.Lock()
	ch.pending[id] = p
	p.surbs = append(p.surbs, id)
	ch.mu.Unlock()
	return nil
}

func (ch *Chat) ackWait() time.Duration {
	if ch.cfg.AckWait > 0 {
		return ch.cfg.AckWait
	}
	d := 50 * time.Millisecond
	if t := ch.top(); t != nil {
		d = t.Params.MeanDelay
	}
	return 2*time.Second + 20*d
}

// resend puts p again until it is acknowledged.
func (ch *Chat) resend(ctx context.Context, p *put) {
	defer func() {
		ch.mu.Lock()
		for _, id := range p.surbs {
			delete(ch.pending, id)
		}
		ch.flying--
		ch.mu.Unlock()
	}()
	wait := ch.ackWait()
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			return
		case <-p.acked:
			return
		case <-time.After(wait):
		}
		if attempt >= maxPutAttempts {
			ch.log.Warn("put not acknowledged; giving up", "attempts", attempt)
			return
		}
		wait *= 2
		if err := ch.putOnce(ctx, p); err != nil && ctx.Err() == nil {
			ch.log.Debug("put again", "err", err)
		}
	}
}

// dispatch routes the replies the mix client opens: the mailbox node's
// pushes and answers, and answers to puts.
func (ch *Chat) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-ch.c.Receive():
			if ch.owner.Handle(ctx, r.Payload) {
				continue
			}
			ch.mu.Lock()
			p := ch.pending[r.SURB]
			ch.mu.Unlock()
			if p == nil {
				continue
			}
			if _, err := mailbox.DecodeAnswer(ch.codec, r.Payload); err != nil {
				ch.log.Warn("mailbox node refused a put", "err", err)
				continue
			}
			p.once.Do(func() {
				close(p.acked)
				if p.track == nil {
					return
				}
				ch.mu.Lock()
				p.track.left--
				if p.track.left == 0 && p.track.known {
					ch.ackedLocked(p.track)
				}
				ch.mu.Unlock()
			})
		}
	}
}

// receive hands what the mailbox delivers to the e2e manager.
func (ch *Chat) receive(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-ch.owner.Messages():
			ch.mu.Lock()
			ch.dirty = true
			ch.mu.Unlock()
			evs, err := ch.m.Handle(ctx, msg.Data)
			if err != nil {
				ch.log.Debug("message not taken", "err", err)
			}
			for _, e := range evs {
				ch.emit(ChatEvent{Event: e})
			}
		}
	}
}

// cleanup deletes the messages handled from the mailbox, at most every few
// seconds.
func (ch *Chat) cleanup(ctx context.Context) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ch.mu.Lock()
		dirty := ch.dirty
		ch.dirty = false
		ch.mu.Unlock()
		if dirty {
			if err := ch.owner.Delete(ctx); err != nil && ctx.Err() == nil {
				ch.log.Debug("mailbox delete", "err", err)
			}
		}
	}
}

// ChatStatuses returns the delivery status function of the chat user in
// dir without starting it (see Chat.Status).
func ChatStatuses(dir string) (func(room e2e.RoomID, e e2e.Entry) e2e.Status, error) {
	ch := &Chat{cfg: ChatConfig{DataDir: dir}, acked: map[string]bool{}}
	if err := ch.loadAcks(); err != nil {
		return nil, err
	}
	return ch.Status, nil
}
