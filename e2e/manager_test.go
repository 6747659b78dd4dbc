package e2e

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// loopback is an in-process Transport: deliveries queue per address and
// the test pumps them into the owners' Managers. The mixnet transport is
// the caller's (package client/mailbox); e2e's logic is independent of it.
type loopback struct {
	mu     sync.Mutex
	owners map[Address]*tuser
	queue  []delivery
	// lenient accepts the refusals a race produces (lost tie-breaks,
	// messages of dead branches, buffered ones).
	lenient bool
}

type delivery struct {
	to      *tuser
	payload []byte
}

func (l *loopback) Deliver(ctx context.Context, to []Address, payload []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range to {
		u, ok := l.owners[a]
		if !ok {
			return fmt.Errorf("no mailbox %x", a.Mailbox)
		}
		l.queue = append(l.queue, delivery{to: u, payload: append([]byte{}, payload...)})
	}
	return nil
}

// pump delivers everything queued (and whatever that produces).
func (l *loopback) pump(t *testing.T) []Event {
	t.Helper()
	var evs []Event
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.mu.Unlock()
			return evs
		}
		d := l.queue[0]
		l.queue = l.queue[1:]
		l.mu.Unlock()
		if d.to.m == nil {
			continue // offline
		}
		e, err := d.to.m.Handle(context.Background(), d.payload)
		benign := errors.Is(err, ErrRemoved) || (l.lenient && (errors.Is(err, ErrCommitLost) || errors.Is(err, ErrFutureEpoch) ||
			errors.Is(err, ErrUnknownGroup) || errors.Is(err, ErrStaleEpoch) || errors.Is(err, ErrRejected) || errors.Is(err, ErrReplay)))
		if err != nil && !benign {
			t.Fatalf("%s: %v", d.to.name, err)
		}
		evs = append(evs, e...)
	}
}

type tuser struct {
	name  string
	path  string
	addr  Address
	store *Store
	m     *Manager
}

var testKDF = KDFParams{Time: 1, Memory: 1024, Threads: 1}

func (l *loopback) user(t *testing.T, name string) *tuser {
	t.Helper()
	u := &tuser{name: name, path: filepath.Join(t.TempDir(), name+".db")}
	copy(u.addr.Node[:], name)
	copy(u.addr.Mailbox[:], "mb-"+name)
	l.mu.Lock()
	if l.owners == nil {
		l.owners = map[Address]*tuser{}
	}
	l.owners[u.addr] = u
	l.mu.Unlock()
	u.open(t, l)
	return u
}

func (u *tuser) open(t *testing.T, l *loopback) {
	t.Helper()
	s, err := OpenStore(u.path, "pass-"+u.name, testKDF)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(Config{Store: s, Transport: l, Addresses: []Address{u.addr}, Name: u.name})
	if err != nil {
		t.Fatal(err)
	}
	u.store, u.m = s, m
	t.Cleanup(func() { s.Close() })
}

func (u *tuser) close() {
	u.store.Close()
	u.m = nil
}

func (u *tuser) key() ed25519.PublicKey { return u.m.Identity().Public() }

// connect: b imports a's card code and invites a into a 1:1 room.
func connect(t *testing.T, l *loopback, a, b *tuser) RoomID {
	t.Helper()
	card, err := a.m.Card(4, [][]byte{[]byte("surb")})
	if err != nil {
		t.Fatal(err)
	}
	code, err := card.Code()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseCode(code)
	if err != nil {
		t.Fatal(err)
	}
	id, err := b.m.AddContact(context.Background(), parsed)
	if err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	return id
}

func lastText(t *testing.T, u *tuser, id RoomID) string {
	t.Helper()
	h, err := u.m.History(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) == 0 {
		return ""
	}
	return h[len(h)-1].Text
}

func TestContactChat(t *testing.T) {
	l := &loopback{}
	alice, bob := l.user(t, "alice"), l.user(t, "bob")
	id := connect(t, l, alice, bob)
	ri, err := alice.m.Room(id)
	if err != nil {
		t.Fatalf("alice did not join: %v", err)
	}
	if len(ri.Members) != 2 {
		t.Fatalf("%d members", len(ri.Members))
	}
	if err := alice.m.Send(context.Background(), id, "hello bob"); err != nil {
		t.Fatal(err)
	}
	evs := l.pump(t)
	if len(evs) != 1 || evs[0].Text != "hello bob" || evs[0].From.Name != "alice" {
		t.Fatalf("bob got %+v", evs)
	}
	h, _ := alice.m.History(id)
	if len(h) != 1 || h[0].Status != StatusSent || !h[0].Outgoing {
		t.Fatalf("alice history %+v", h)
	}
	// Restart both mid-conversation: keys, group and history survive.
	alice.close()
	bob.close()
	alice.open(t, l)
	bob.open(t, l)
	if err := bob.m.Send(context.Background(), id, "still here"); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	if got := lastText(t, alice, id); got != "still here" {
		t.Fatalf("alice last message %q", got)
	}
	if h, _ := bob.m.History(id); len(h) != 2 {
		t.Fatalf("bob history after restart: %d entries", len(h))
	}
	// Commits still work after a restart (TreeKEM path keys are stored).
	carol := l.user(t, "carol")
	card, _ := carol.m.Card(2, nil)
	if err := alice.m.ImportContact(card); err != nil {
		t.Fatal(err)
	}
	if err := alice.m.Invite(context.Background(), id, carol.key()); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	if err := bob.m.Send(context.Background(), id, "hi carol"); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	if got := lastText(t, carol, id); got != "hi carol" {
		t.Fatalf("carol got %q", got)
	}
	// A wrong passphrase does not open the store.
	alice.close()
	if _, err := OpenStore(alice.path, "wrong", testKDF); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
}

func TestFiveMemberRoom(t *testing.T) {
	l := &loopback{}
	var us []*tuser
	for _, n := range []string{"alice", "bob", "carol", "dave", "erin"} {
		us = append(us, l.user(t, n))
	}
	owner := us[0]
	id, err := owner.m.CreateRoom("five")
	if err != nil {
		t.Fatal(err)
	}
	var keys []ed25519.PublicKey
	for _, u := range us[1:] {
		card, err := u.m.Card(2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := owner.m.ImportContact(card); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, u.key())
	}
	if err := owner.m.Invite(context.Background(), id, keys...); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	for _, u := range us {
		ri, err := u.m.Room(id)
		if err != nil || len(ri.Members) != 5 {
			t.Fatalf("%s: %v %d", u.name, err, len(ri.Members))
		}
	}
	// Everyone talks; everyone else reads (members learnt each other's
	// mailboxes from their credentials).
	for _, u := range us {
		if err := u.m.Send(context.Background(), id, "from "+u.name); err != nil {
			t.Fatal(err)
		}
		l.pump(t)
		for _, v := range us {
			if got := lastText(t, v, id); got != "from "+u.name {
				t.Fatalf("%s read %q after %s spoke", v.name, got, u.name)
			}
		}
	}
	// Carol removes dave; dave sees it; new messages do not reach him.
	if err := us[2].m.Remove(context.Background(), id, us[3].key()); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	if ri, _ := us[3].m.Room(id); !ri.Removed {
		t.Fatal("dave not told he was removed")
	}
	// Dave keeps his old state: the new epoch's message must not decrypt
	// for him even if it reaches his mailbox.
	if err := us[1].m.Send(context.Background(), id, "after dave"); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	if got := lastText(t, us[3], id); got == "after dave" {
		t.Fatal("removed member read a new message")
	}
	if got := lastText(t, us[4], id); got != "after dave" {
		t.Fatalf("erin read %q", got)
	}
	// Erin leaves: alice (lowest leaf) commits her proposal.
	if err := us[4].m.Leave(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	if ri, _ := us[4].m.Room(id); !ri.Removed {
		t.Fatal("erin's leave was not committed")
	}
	for _, u := range us[:3] {
		if ri, _ := u.m.Room(id); len(ri.Members) != 3 {
			t.Fatalf("%s sees %d members", u.name, len(ri.Members))
		}
	}
}

// Two members change the room at the same time; after delivery everyone
// converges and the loser's change is redone on top of the winner's.
func TestManagerConcurrentCommits(t *testing.T) {
	l := &loopback{}
	alice, bob, carol, dave := l.user(t, "alice"), l.user(t, "bob"), l.user(t, "carol"), l.user(t, "dave")
	id, err := alice.m.CreateRoom("race")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []*tuser{bob, carol, dave} {
		card, _ := u.m.Card(3, nil)
		if err := alice.m.ImportContact(card); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.m.Invite(context.Background(), id, bob.key(), carol.key()); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	// Simultaneously: alice adds dave, bob removes carol.
	if err := alice.m.Invite(context.Background(), id, dave.key()); err != nil {
		t.Fatal(err)
	}
	if err := bob.m.Remove(context.Background(), id, carol.key()); err != nil {
		t.Fatal(err)
	}
	l.lenient = true
	var evs []Event
	for range 3 {
		evs = append(evs, l.pump(t)...)
	}
	rolled := false
	for _, e := range evs {
		rolled = rolled || e.Kind == EventRollback
	}
	if !rolled {
		t.Fatal("no rollback reported")
	}
	ra, _ := alice.m.Room(id)
	rb, _ := bob.m.Room(id)
	rd, err := dave.m.Room(id)
	if err != nil {
		t.Fatalf("dave never joined: %v", err)
	}
	if ra.Epoch != rb.Epoch || ra.Epoch != rd.Epoch || len(ra.Members) != 3 || len(rb.Members) != 3 || len(rd.Members) != 3 {
		t.Fatalf("diverged: alice %d/%d bob %d/%d dave %d/%d", ra.Epoch, len(ra.Members), rb.Epoch, len(rb.Members), rd.Epoch, len(rd.Members))
	}
	if rc, _ := carol.m.Room(id); !rc.Removed {
		t.Fatal("carol not removed")
	}
	if err := dave.m.Send(context.Background(), id, "made it"); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	if lastText(t, alice, id) != "made it" || lastText(t, bob, id) != "made it" {
		t.Fatal("dave's message not read")
	}
}
