package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// payloadVersion prefixes every payload e2e hands to the Transport; the
// rest is one MLSMessage (a Welcome or a PrivateMessage).
const payloadVersion = 1

// Application content types inside MLS application messages.
const (
	contentText = 1 // UTF-8 text
)

// RoomID names a room: its MLS group id (16 random bytes).
type RoomID string

func (r RoomID) String() string { return hex.EncodeToString([]byte(r)) }

// Status is a sent message's delivery status.
type Status string

// Delivery statuses. Acknowledgements (acked) come from the transport
// layer's queue, not from e2e.
const (
	StatusQueued Status = "queued"
	StatusSent   Status = "sent"
	StatusFailed Status = "failed"
)

// Entry is one line of a room's history.
type Entry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	From     []byte    `json:"from"` // Ed25519 key
	FromName string    `json:"name"`
	Text     string    `json:"text"`
	Outgoing bool      `json:"out"`
	Status   Status    `json:"status,omitempty"`
	Epoch    uint64    `json:"epoch"`
}

// EventKind says what an Event is.
type EventKind string

// Event kinds.
const (
	EventMessage  EventKind = "message"
	EventJoined   EventKind = "joined"   // we joined a room via a Welcome
	EventChanged  EventKind = "changed"  // membership changed (a commit)
	EventRemoved  EventKind = "removed"  // we were removed (or our leave was committed)
	EventRollback EventKind = "rollback" // a concurrent commit won; see docs/e2e.md
)

// Event is what Handle reports.
type Event struct {
	Room  RoomID
	Kind  EventKind
	From  Member
	Text  string
	Epoch uint64
}

// Config configures a Manager.
type Config struct {
	Store     *Store
	Transport Transport
	// Addresses are our own mailboxes: put on our cards and announced to
	// rooms.
	Addresses []Address
	// Name is our display name; used only when the store has no identity.
	Name    string
	Backend Backend // default MLSGo{}
	// RequireKnownContact refuses Welcomes to groups without any of our
	// contacts in them (by default a Welcome only has to use one of our
	// unused key packages, which we hand out on our cards).
	RequireKnownContact bool
	// MaxPayload, if positive, is the largest payload the Transport can
	// deliver: an invite, removal or message whose payload would be larger
	// is refused with ErrTooLarge before anything is stored or sent (the
	// room stays as it was).
	MaxPayload int
	Logger     *slog.Logger
}

// ErrTooLarge refuses what the Transport could not deliver (see
// Config.MaxPayload).
var ErrTooLarge = errors.New("e2e: payload larger than the transport delivers")

// checkSize applies Config.MaxPayload to outs.
func (m *Manager) checkSize(outs []outgoing) error {
	for _, o := range outs {
		if m.cfg.MaxPayload > 0 && len(o.to) > 0 && len(o.payload) > m.cfg.MaxPayload {
			return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(o.payload), m.cfg.MaxPayload)
		}
	}
	return nil
}

// undo restores a room from the store after a refused change.
func (m *Manager) undo(id RoomID) {
	if err := m.reloadRoom(id); err != nil {
		m.log.Warn("e2e: reloading a room", "room", id, "err", err)
	}
}

// Manager holds one user's contacts and rooms. It is safe for concurrent
// use; network delivery happens outside its lock.
type Manager struct {
	cfg Config
	log *slog.Logger
	b   Backend

	mu       sync.Mutex
	id       *Identity
	rooms    map[RoomID]*room
	contacts map[string]*Card // by hex key
	// pending holds messages for rooms we have not joined yet (the
	// mixnet may deliver a room's first message before its Welcome).
	pending [][]byte
}

const maxPending = 64

// room is one MLS group with its ordering state and name.
type room struct {
	ID      RoomID
	o       *ordered
	Name    string
	Removed bool
	NextSeq uint64
}

// roomState is a room as stored.
type roomState struct {
	Name    string            `json:"name"`
	Group   []byte            `json:"group"`
	Hist    []commitRecord    `json:"hist,omitempty"`
	Sent    []sentRecord      `json:"sent,omitempty"`
	Future  [][]byte          `json:"future,omitempty"`
	Seen    map[string]uint64 `json:"seen,omitempty"`
	Removed bool              `json:"removed,omitempty"`
	NextSeq uint64            `json:"seq"`
}

type identityState struct {
	Name string `json:"name"`
	Seed []byte `json:"seed"`
}

// Open loads (or creates) the identity, contacts and rooms from cfg.Store.
func Open(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Transport == nil {
		return nil, errors.New("e2e: Config needs Store and Transport")
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, b: cfg.Backend, rooms: map[RoomID]*room{}, contacts: map[string]*Card{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.b == nil {
		m.b = MLSGo{}
	}
	s := cfg.Store
	err := s.db.Update(func(tx *bolt.Tx) error {
		var ids identityState
		ok, err := s.getJSON(tx, bIdentity, []byte("self"), &ids)
		if err != nil {
			return err
		}
		if ok {
			if len(ids.Seed) != ed25519.SeedSize {
				return fmt.Errorf("%w: identity", ErrMalformed)
			}
			m.id = &Identity{Name: ids.Name, Key: ed25519.NewKeyFromSeed(ids.Seed), Addresses: cfg.Addresses}
		} else {
			id, err := NewIdentity(cfg.Name)
			if err != nil {
				return err
			}
			id.Addresses = cfg.Addresses
			m.id = id
			if err := s.putJSON(tx, bIdentity, []byte("self"), identityState{Name: id.Name, Seed: id.Key.Seed()}); err != nil {
				return err
			}
		}
		if err := s.each(tx, bContacts, nil, func(k, v []byte) error {
			var sc storedContact
			if err := jsonUnmarshal(v, &sc); err != nil {
				return err
			}
			c, err := ParseCard(sc.Card)
			if err != nil {
				return err
			}
			c.KeyPackages = c.KeyPackages[min(sc.Used, len(c.KeyPackages)):]
			m.contacts[hex.EncodeToString(c.Key)] = c
			return nil
		}); err != nil {
			return err
		}
		return s.each(tx, bRooms, nil, func(k, v []byte) error {
			var st roomState
			if err := jsonUnmarshal(v, &st); err != nil {
				return err
			}
			r, err := m.loadRoom(RoomID(bytes.Clone(k)), st)
			if err != nil {
				return err
			}
			m.rooms[r.ID] = r
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("e2e: open: %w", err)
	}
	return m, nil
}

// Identity is our identity.
func (m *Manager) Identity() *Identity { return m.id }

func (m *Manager) saveRoom(tx *bolt.Tx, r *room) error {
	gs, err := r.o.g.Marshal()
	if err != nil {
		return err
	}
	st := roomState{Name: r.Name, Group: gs, Hist: r.o.hist, Sent: r.o.sent, Future: r.o.future, Removed: r.Removed, NextSeq: r.NextSeq, Seen: map[string]uint64{}}
	for k, e := range r.o.seen {
		st.Seen[hex.EncodeToString(k[:])] = e
	}
	return m.cfg.Store.putJSON(tx, bRooms, []byte(r.ID), st)
}

func (m *Manager) addHistory(tx *bolt.Tx, r *room, e Entry) (Entry, error) {
	e.Seq = r.NextSeq
	r.NextSeq++
	return e, m.cfg.Store.putJSON(tx, bHistory, historyKey([]byte(r.ID), e.Seq), e)
}

// outgoing is a delivery to make after the lock is released.
type outgoing struct {
	room    RoomID
	seq     uint64 // history entry to mark sent (text messages)
	hasSeq  bool
	to      []Address
	payload []byte
}

func wrap(msg []byte) []byte { return append([]byte{payloadVersion}, msg...) }

func (m *Manager) deliver(ctx context.Context, outs []outgoing) error {
	var first error
	for _, o := range outs {
		if len(o.to) == 0 {
			continue
		}
		err := m.cfg.Transport.Deliver(ctx, o.to, o.payload)
		if err != nil {
			m.log.Warn("e2e: delivery failed", "room", o.room, "err", err)
			if first == nil {
				first = err
			}
		}
		if o.hasSeq {
			st := StatusSent
			if err != nil {
				st = StatusFailed
			}
			m.setStatus(o.room, o.seq, st)
		}
	}
	return first
}

func (m *Manager) setStatus(id RoomID, seq uint64, st Status) {
	if err := m.SetStatus(id, seq, st); err != nil {
		m.log.Warn("e2e: status update", "err", err)
	}
}

// ErrNoEntry is returned by SetStatus for a history entry that does not
// exist or is not one we sent.
var ErrNoEntry = errors.New("e2e: no such sent history entry")

// SetStatus records the delivery status of one of our sent history entries
// (Deliver's outcome is recorded by the Manager itself; a transport with
// acknowledgements records them with this, e.g. node.StatusAcked).
func (m *Manager) SetStatus(id RoomID, seq uint64, st Status) error {
	s := m.cfg.Store
	err := s.db.Update(func(tx *bolt.Tx) error {
		var e Entry
		ok, err := s.getJSON(tx, bHistory, historyKey([]byte(id), seq), &e)
		if err != nil {
			return err
		}
		if !ok || !e.Outgoing {
			return fmt.Errorf("%w: room %s, #%d", ErrNoEntry, id, seq)
		}
		if e.Status == st {
			return nil
		}
		e.Status = st
		return s.putJSON(tx, bHistory, historyKey([]byte(id), seq), e)
	})
	if err != nil {
		return fmt.Errorf("e2e: status: %w", err)
	}
	return nil
}

// recipients are the mailboxes of every member but us (from their MLS
// credentials).
func (m *Manager) recipients(r *room, members []Member) []Address {
	var to []Address
	for _, mem := range members {
		if bytes.Equal(mem.Key, m.id.Public()) {
			continue
		}
		if len(mem.Addresses) == 0 {
			m.log.Warn("e2e: no mailbox known for member", "room", r.ID, "member", mem.Name)
		}
		to = appendMissing(to, mem.Addresses)
	}
	return to
}

// Card makes a signed contact card with n fresh key packages (their
// private halves stay in the store until used) and the given SURBs.
func (m *Manager) Card(n int, surbs [][]byte) (*Card, error) {
	if n <= 0 || n > maxKeyPackages {
		return nil, fmt.Errorf("e2e: %d key packages", n)
	}
	c := &Card{Name: m.id.Name, Addresses: m.cfg.Addresses, SURBs: surbs}
	var kps []KeyPackage
	for i := 0; i < n; i++ {
		kp, err := m.b.NewKeyPackage(m.id)
		if err != nil {
			return nil, err
		}
		kps = append(kps, kp)
		c.KeyPackages = append(c.KeyPackages, kp.Public)
	}
	if err := c.Sign(m.id); err != nil {
		return nil, err
	}
	s := m.cfg.Store
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, kp := range kps {
			ref, err := m.b.KeyPackageRef(kp.Public)
			if err != nil {
				return err
			}
			if err := s.putJSON(tx, bKPs, ref, kp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("e2e: store key packages: %w", err)
	}
	return c, nil
}

// Contacts lists known contacts.
func (m *Manager) Contacts() []*Card {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Card
	for _, c := range m.contacts {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ImportContact verifies a card (signature, and every key package signed
// by the card's key) and stores it.
func (m *Manager) ImportContact(c *Card) error {
	for _, kp := range c.KeyPackages {
		mem, err := m.b.CheckKeyPackage(kp)
		if err != nil {
			return err
		}
		if !bytes.Equal(mem.Key, c.Key) {
			return fmt.Errorf("%w: key package of another identity on %s's card", ErrRejected, c.Name)
		}
	}
	b, err := c.MarshalBinary()
	if err != nil {
		return err
	}
	if _, err := ParseCard(b); err != nil {
		return err
	}
	s := m.cfg.Store
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := s.db.Update(func(tx *bolt.Tx) error { return s.putJSON(tx, bContacts, c.Key, storedContact{Card: b}) }); err != nil {
		return err
	}
	m.contacts[hex.EncodeToString(c.Key)] = c
	return nil
}

// takeKeyPackage removes and returns an unused key package of a contact
// (each is usable once).
func (m *Manager) takeKeyPackage(tx *bolt.Tx, c *Card) ([]byte, error) {
	if len(c.KeyPackages) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoKeyPackage, c.Name)
	}
	s := m.cfg.Store
	var sc storedContact
	if ok, err := s.getJSON(tx, bContacts, c.Key, &sc); err != nil || !ok {
		return nil, fmt.Errorf("%w: %v", ErrUnknownContact, err)
	}
	kp := c.KeyPackages[0]
	c.KeyPackages = c.KeyPackages[1:]
	sc.Used++
	return kp, s.putJSON(tx, bContacts, c.Key, sc)
}

// storedContact is a card (canonical encoding, signature intact) and how
// many of its key packages we have used.
type storedContact struct {
	Card []byte `json:"card"`
	Used int    `json:"used"`
}

func newRoomID() (RoomID, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return RoomID(b), nil
}

// CreateRoom makes a room with only us in it.
func (m *Manager) CreateRoom(name string) (RoomID, error) {
	id, err := newRoomID()
	if err != nil {
		return "", err
	}
	g, err := m.b.NewGroup(m.id, []byte(id))
	if err != nil {
		return "", err
	}
	r := &room{ID: id, o: &ordered{b: m.b, id: m.id, g: g}, Name: name}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.cfg.Store
	if err := s.db.Update(func(tx *bolt.Tx) error { return m.saveRoom(tx, r) }); err != nil {
		return "", err
	}
	m.rooms[id] = r
	return id, nil
}

// AddContact imports a card and opens a 1:1 room with them: a 2-member
// group whose Welcome goes to their mailboxes.
func (m *Manager) AddContact(ctx context.Context, c *Card) (RoomID, error) {
	if err := m.ImportContact(c); err != nil {
		return "", err
	}
	id, err := m.CreateRoom(c.Name)
	if err != nil {
		return "", err
	}
	return id, m.Invite(ctx, id, c.Key)
}

func (m *Manager) room(id RoomID) (*room, error) {
	r, ok := m.rooms[id]
	if !ok {
		return nil, ErrUnknownGroup
	}
	if r.Removed {
		return nil, ErrRemoved
	}
	return r, nil
}

// Invite adds contacts (by key) to a room in one commit.
func (m *Manager) Invite(ctx context.Context, id RoomID, keys ...ed25519.PublicKey) error {
	m.mu.Lock()
	outs, err := m.invite(id, keys)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.deliver(ctx, outs)
}

func (m *Manager) invite(id RoomID, keys []ed25519.PublicKey) ([]outgoing, error) {
	r, err := m.room(id)
	if err != nil {
		return nil, err
	}
	var cards []*Card
	for _, k := range keys {
		c, ok := m.contacts[hex.EncodeToString(k)]
		if !ok {
			return nil, ErrUnknownContact
		}
		cards = append(cards, c)
	}
	var outs []outgoing
	saved := make([][][]byte, len(cards))
	for i, c := range cards {
		saved[i] = c.KeyPackages
	}
	s := m.cfg.Store
	err = s.db.Update(func(tx *bolt.Tx) error {
		var in Intent
		for _, c := range cards {
			kp, err := m.takeKeyPackage(tx, c)
			if err != nil {
				return err
			}
			in.Adds = append(in.Adds, kp)
		}
		outs, err = m.commit(tx, r, in)
		if err == nil {
			err = m.checkSize(outs)
		}
		return err
	})
	if err != nil {
		for i, c := range cards {
			c.KeyPackages = saved[i]
		}
		m.undo(id)
	}
	return outs, err
}

// commit makes one commit for in on r, saves the room and returns the
// deliveries: the commit to the members before it (so the removed learn
// it), the Welcome to the new ones.
func (m *Manager) commit(tx *bolt.Tx, r *room, in Intent) ([]outgoing, error) {
	oldMembers := r.o.g.Members()
	var removes []uint32
	for _, k := range in.Removes {
		for _, mem := range oldMembers {
			if bytes.Equal(mem.Key, k) {
				removes = append(removes, mem.Leaf)
			}
		}
	}
	var newAddrs []Address
	for _, kp := range in.Adds {
		mem, err := m.b.CheckKeyPackage(kp)
		if err != nil {
			return nil, err
		}
		newAddrs = appendMissing(newAddrs, mem.Addresses)
	}
	commit, welcome, err := r.o.commit(in, removes)
	if err != nil {
		return nil, err
	}
	outs := []outgoing{{room: r.ID, to: m.recipients(r, oldMembers), payload: wrap(commit)}}
	if welcome != nil {
		outs = append(outs, outgoing{room: r.ID, to: newAddrs, payload: wrap(welcome)})
	}
	return outs, m.saveRoom(tx, r)
}

// Remove removes members (by key) from a room.
func (m *Manager) Remove(ctx context.Context, id RoomID, keys ...ed25519.PublicKey) error {
	m.mu.Lock()
	var outs []outgoing
	r, err := m.room(id)
	if err == nil {
		in := Intent{}
		for _, k := range keys {
			in.Removes = append(in.Removes, k)
		}
		s := m.cfg.Store
		err = s.db.Update(func(tx *bolt.Tx) error {
			var err error
			outs, err = m.commit(tx, r, in)
			if err == nil {
				err = m.checkSize(outs)
			}
			return err
		})
		if err != nil {
			m.undo(id)
		}
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.deliver(ctx, outs)
}

// Leave asks the room to remove us: a Remove proposal that another member
// commits (docs/e2e.md).
func (m *Manager) Leave(ctx context.Context, id RoomID) error {
	m.mu.Lock()
	var outs []outgoing
	r, err := m.room(id)
	if err == nil {
		var prop []byte
		prop, err = r.o.g.ProposeLeave()
		if err == nil {
			outs = []outgoing{{room: id, to: m.recipients(r, r.o.g.Members()), payload: wrap(prop)}}
			s := m.cfg.Store
			err = s.db.Update(func(tx *bolt.Tx) error { return m.saveRoom(tx, r) })
		}
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.deliver(ctx, outs)
}

// Send encrypts text once and delivers it to every member's mailbox.
func (m *Manager) Send(ctx context.Context, id RoomID, text string) error {
	m.mu.Lock()
	var outs []outgoing
	r, err := m.room(id)
	if err == nil {
		var ct []byte
		ct, err = r.o.encrypt(append([]byte{contentText}, text...))
		if err == nil && m.cfg.MaxPayload > 0 && len(wrap(ct)) > m.cfg.MaxPayload {
			err = fmt.Errorf("%w: %d bytes, at most %d (shorten the text)", ErrTooLarge, len(wrap(ct)), m.cfg.MaxPayload)
			m.undo(id)
		}
		if err == nil {
			s := m.cfg.Store
			err = s.db.Update(func(tx *bolt.Tx) error {
				e, err := m.addHistory(tx, r, Entry{Time: time.Now(), From: m.id.Public(), FromName: m.id.Name, Text: text, Outgoing: true, Status: StatusQueued, Epoch: r.o.g.Epoch()})
				if err != nil {
					return err
				}
				outs = []outgoing{{room: id, seq: e.Seq, hasSeq: true, to: m.recipients(r, r.o.g.Members()), payload: wrap(ct)}}
				return m.saveRoom(tx, r)
			})
		}
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	return m.deliver(ctx, outs)
}

// History returns a room's messages in order.
func (m *Manager) History(id RoomID) ([]Entry, error) {
	var out []Entry
	s := m.cfg.Store
	err := s.db.View(func(tx *bolt.Tx) error {
		return s.each(tx, bHistory, append([]byte(id), 0), func(k, v []byte) error {
			var e Entry
			if err := jsonUnmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// RoomInfo describes a room.
type RoomInfo struct {
	ID      RoomID
	Name    string
	Epoch   uint64
	Members []Member
	Removed bool
}

// Rooms lists our rooms.
func (m *Manager) Rooms() []RoomInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []RoomInfo
	for _, r := range m.rooms {
		out = append(out, RoomInfo{ID: r.ID, Name: r.Name, Epoch: r.o.g.Epoch(), Members: r.o.g.Members(), Removed: r.Removed})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Room describes one room.
func (m *Manager) Room(id RoomID) (RoomInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rooms[id]
	if !ok {
		return RoomInfo{}, ErrUnknownGroup
	}
	return RoomInfo{ID: r.ID, Name: r.Name, Epoch: r.o.g.Epoch(), Members: r.o.g.Members(), Removed: r.Removed}, nil
}

// Handle processes one payload from our mailbox. Bad input is rejected
// with an error (and logged) and leaves every state untouched.
func (m *Manager) Handle(ctx context.Context, payload []byte) ([]Event, error) {
	m.mu.Lock()
	evs, outs, err := m.handle(payload)
	m.mu.Unlock()
	if err != nil {
		m.log.Info("e2e: rejected message", "err", err)
		return nil, err
	}
	return evs, m.deliver(ctx, outs)
}

func (m *Manager) handle(payload []byte) ([]Event, []outgoing, error) {
	if len(payload) < 2 || payload[0] != payloadVersion {
		return nil, nil, fmt.Errorf("%w: payload version", ErrMalformed)
	}
	msg := payload[1:]
	h, err := m.b.Header(msg)
	if err != nil {
		return nil, nil, err
	}
	if h.Kind == KindWelcome {
		return m.join(msg)
	}
	r, ok := m.rooms[RoomID(h.GroupID)]
	if !ok {
		if len(m.pending) < maxPending {
			m.pending = append(m.pending, bytes.Clone(payload))
		}
		return nil, nil, fmt.Errorf("%w (kept until a Welcome for it arrives)", ErrUnknownGroup)
	}
	if r.Removed {
		return nil, nil, ErrRemoved
	}
	var evs []Event
	var outs []outgoing
	s := m.cfg.Store
	err = s.db.Update(func(tx *bolt.Tx) error {

		p, rb, drained, err := r.o.receive(msg)
		if err != nil {
			return err
		}
		for _, p := range append([]Processed{p}, drained...) {
			ev, err := m.apply(tx, r, p)
			if err != nil {
				return err
			}
			if ev != nil {
				evs = append(evs, *ev)
			}
		}
		if rb != nil {
			evs = append(evs, Event{Room: r.ID, Kind: EventRollback, Epoch: r.o.g.Epoch()})
			o, err := m.redo(tx, r, rb)
			if err != nil {
				return err
			}
			outs = append(outs, o...)
		}
		// A leave proposal is committed by the lowest-leaf remaining member.
		if p.Kind == KindProposal && !r.Removed && r.o.g.PendingProposals() > 0 && m.lowestOther(r, p.Sender.Leaf) {
			o, err := m.commit(tx, r, Intent{})
			if err != nil {
				return err
			}
			outs = append(outs, o...)
		}
		return m.saveRoom(tx, r)
	})
	if err != nil {
		// Back to the stored state: nothing of a rejected message stays.
		if rerr := m.reloadRoom(r.ID); rerr != nil {
			m.log.Error("e2e: reload room", "room", r.ID, "err", rerr)
		}
		return nil, nil, err
	}
	return evs, outs, nil
}

func (m *Manager) reloadRoom(id RoomID) error {
	s := m.cfg.Store
	return s.db.View(func(tx *bolt.Tx) error {
		var st roomState
		ok, err := s.getJSON(tx, bRooms, []byte(id), &st)
		if err != nil || !ok {
			return err
		}
		r, err := m.loadRoom(id, st)
		if err != nil {
			return err
		}
		m.rooms[id] = r
		return nil
	})
}

func (m *Manager) loadRoom(id RoomID, st roomState) (*room, error) {
	g, err := m.b.Load(m.id, st.Group)
	if err != nil {
		return nil, err
	}
	o := &ordered{b: m.b, id: m.id, g: g, hist: st.Hist, sent: st.Sent, future: st.Future, seen: map[[32]byte]uint64{}}
	for h, e := range st.Seen {
		var k [32]byte
		if b, err := hex.DecodeString(h); err == nil && len(b) == 32 {
			copy(k[:], b)
			o.seen[k] = e
		}
	}
	return &room{ID: id, o: o, Name: st.Name, Removed: st.Removed, NextSeq: st.NextSeq}, nil
}

func appendMissing(to, addrs []Address) []Address {
	for _, a := range addrs {
		found := false
		for _, b := range to {
			found = found || a == b
		}
		if !found {
			to = append(to, a)
		}
	}
	return to
}

// lowestOther: are we the member with the lowest leaf other than leaver?
func (m *Manager) lowestOther(r *room, leaver uint32) bool {
	self := r.o.g.Self()
	for _, mem := range r.o.g.Members() {
		if mem.Leaf != leaver && mem.Leaf < self {
			return false
		}
	}
	return self != leaver
}

// apply turns a processed message into history and an event.
func (m *Manager) apply(tx *bolt.Tx, r *room, p Processed) (*Event, error) {
	switch p.Kind {
	case KindCommit:
		if p.Removed {
			r.Removed = true
			return &Event{Room: r.ID, Kind: EventRemoved, From: p.Sender, Epoch: p.Epoch}, nil
		}
		return &Event{Room: r.ID, Kind: EventChanged, From: p.Sender, Epoch: p.Epoch}, nil
	case KindApplication:
		if len(p.Plaintext) == 0 {
			return nil, fmt.Errorf("%w: empty application message", ErrMalformed)
		}
		switch p.Plaintext[0] {
		case contentText:
			e, err := m.addHistory(tx, r, Entry{Time: time.Now(), From: p.Sender.Key, FromName: p.Sender.Name, Text: string(p.Plaintext[1:]), Epoch: p.Epoch})
			if err != nil {
				return nil, err
			}
			return &Event{Room: r.ID, Kind: EventMessage, From: p.Sender, Text: e.Text, Epoch: p.Epoch}, nil
		}
		return nil, fmt.Errorf("%w: content type %d", ErrMalformed, p.Plaintext[0])
	}
	return nil, nil
}

// redo re-commits our lost intents and re-sends messages after a rollback.
func (m *Manager) redo(tx *bolt.Tx, r *room, rb *Rollback) ([]outgoing, error) {
	var outs []outgoing
	members := map[string]bool{}
	for _, mem := range r.o.g.Members() {
		members[hex.EncodeToString(mem.Key)] = true
	}
	var in Intent
	for _, lost := range rb.Lost {
		for _, kp := range lost.Adds {
			if mem, err := m.b.CheckKeyPackage(kp); err == nil && !members[hex.EncodeToString(mem.Key)] {
				// The joiner holds a Welcome for the losing branch; the key
				// package is spent there, so use a fresh one from the card.
				if c, ok := m.contacts[hex.EncodeToString(mem.Key)]; ok {
					fresh, err := m.takeKeyPackage(tx, c)
					if err != nil {
						m.log.Warn("e2e: cannot redo add after rollback", "member", mem.Name, "err", err)
						continue
					}
					in.Adds = append(in.Adds, fresh)
				}
			}
		}
		for _, k := range lost.Removes {
			if members[hex.EncodeToString(k)] {
				in.Removes = append(in.Removes, k)
			}
		}
	}
	if len(in.Adds) > 0 || len(in.Removes) > 0 {
		o, err := m.commit(tx, r, in)
		if err != nil {
			return nil, err
		}
		outs = append(outs, o...)
	}
	for _, pt := range rb.Resend {
		ct, err := r.o.encrypt(pt)
		if err != nil {
			return nil, err
		}
		outs = append(outs, outgoing{room: r.ID, to: m.recipients(r, r.o.g.Members()), payload: wrap(ct)})
	}
	return outs, nil
}

// join handles a Welcome: it must use one of our unused key packages and
// come from a group with one of our contacts in it.
func (m *Manager) join(welcome []byte) ([]Event, []outgoing, error) {
	evs, outs, id, err := m.joinWelcome(welcome)
	if err != nil {
		return nil, nil, err
	}
	pending := m.pending
	m.pending = nil
	for _, p := range pending {
		if h, err := m.b.Header(p[1:]); err != nil || RoomID(h.GroupID) != id {
			m.pending = append(m.pending, p)
			continue
		}
		e, o, err := m.handle(p)
		if err != nil {
			m.log.Info("e2e: rejected buffered message", "room", id, "err", err)
			continue
		}
		evs = append(evs, e...)
		outs = append(outs, o...)
	}
	return evs, outs, nil
}

func (m *Manager) joinWelcome(welcome []byte) ([]Event, []outgoing, RoomID, error) {
	var joined RoomID
	refs, err := m.b.WelcomeRefs(welcome)
	if err != nil {
		return nil, nil, "", err
	}
	s := m.cfg.Store
	var evs []Event
	err = s.db.Update(func(tx *bolt.Tx) error {
		var kp KeyPackage
		var ref []byte
		for _, r := range refs {
			ok, err := s.getJSON(tx, bKPs, r, &kp)
			if err != nil {
				return err
			}
			if ok {
				ref = r
				break
			}
		}
		if ref == nil {
			return ErrUnsolicited
		}
		g, err := m.b.Join(m.id, welcome, kp)
		if err != nil {
			return err
		}
		id := RoomID(g.ID())
		known := false
		name := ""
		for _, mem := range g.Members() {
			if c, ok := m.contacts[hex.EncodeToString(mem.Key)]; ok {
				known = true
				if name == "" {
					name = c.Name
				}
			}
		}
		if !known && m.cfg.RequireKnownContact {
			return ErrWelcomeNotAllowed
		}
		if name == "" {
			for _, mem := range g.Members() {
				if mem.Leaf != g.Self() {
					name = mem.Name
					break
				}
			}
		}
		if old, ok := m.rooms[id]; ok && !old.Removed && old.o.g.Epoch() >= g.Epoch() {
			return fmt.Errorf("%w: welcome for a room we are in", ErrReplay)
		}
		r := &room{ID: id, o: &ordered{b: m.b, id: m.id, g: g}, Name: name}
		if old, ok := m.rooms[id]; ok {
			r.NextSeq, r.Name = old.NextSeq, old.Name
		}
		if err := tx.Bucket(bKPs).Delete(ref); err != nil {
			return err
		}
		if err := m.saveRoom(tx, r); err != nil {
			return err
		}
		m.rooms[id] = r
		joined = id
		evs = append(evs, Event{Room: id, Kind: EventJoined, Epoch: g.Epoch()})
		return nil
	})
	if err != nil {
		return nil, nil, "", err
	}
	return evs, nil, joined, nil
}
