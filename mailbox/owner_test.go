package mailbox

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/sphinx"
)

// tbMix is the Mixnet of a testbed user: forward packets through L1, L2,
// L3 to the mailbox node, SURBs back through them to the user's home.
type tbMix struct {
	tb *testbed
	u  *user
}

func (m tbMix) Send(_ context.Context, _ client.Destination, payload []byte) (client.Sent, error) {
	m.tb.sendRaw(payload)
	return client.Sent{}, nil
}

func (m tbMix) NewSURB(context.Context) (client.SURB, error) {
	m.tb.t.Helper()
	path := []sphinx.Hop{m.tb.mix[0].hop, m.tb.mix[1].hop, m.tb.mix[2].hop, m.tb.home.hop}
	s, keys, _, err := m.tb.f.NewSURB(rand.Reader, path, m.u.token, sphinx.DelayPolicy{})
	if err != nil {
		return client.SURB{}, err
	}
	b, err := s.MarshalBinary()
	if err != nil {
		return client.SURB{}, err
	}
	m.tb.mu.Lock()
	m.tb.keys[keys.ID] = keys
	m.tb.mu.Unlock()
	return client.SURB{ID: keys.ID, Bytes: b, Epoch: m.tb.epoch.Load()}, nil
}

func (m tbMix) PayloadSize() int { return m.tb.f.Geometry().PayloadCapacity() - 2 }

// newOwner returns an owner of a new mailbox of a new testbed user whose
// deliveries go to the owner's Handle.
func newOwner(t *testing.T, tb *testbed, cfg OwnerConfig) (*Owner, *user) {
	u := tb.newUser()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	// ID zero: the owner derives it from its key.
	cfg.Mix, cfg.Codec, cfg.Key, cfg.Type = tbMix{tb, u}, tb.codec, key, 7
	o := NewOwner(cfg)
	u.raw = func(body []byte) {
		if !o.Handle(context.Background(), body) {
			t.Errorf("owner did not take a delivery of %d bytes", len(body))
		}
	}
	return o, u
}

func TestOwnerCreatesStocksAndReceives(t *testing.T) {
	tb := newTestbed(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The node's first answers are lost: Create asks again until it hears.
	o, u := newOwner(t, tb, OwnerConfig{Stock: 4})
	u.offline.Store(true)
	time.AfterFunc(time.Second, func() { u.offline.Store(false) })
	start := time.Now()
	if err := o.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if u.lost.Load() == 0 {
		t.Error("no answer was lost while the user was offline")
	}
	t.Logf("create answered %v after start, %d answers lost", time.Since(start).Round(time.Millisecond), u.lost.Load())
	// A second create of the same mailbox counts as made ("exists").
	if err := o.Create(ctx); err != nil {
		t.Fatalf("create of an existing mailbox: %v", err)
	}

	go o.Run(ctx)
	msgs := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
	for _, m := range msgs {
		if _, err := Put(ctx, tbMix{tb, tb.newUser()}, tb.codec, sphinx.NodeID{}, o.cfg.ID, 7, m); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for len(got) < len(msgs) {
		select {
		case m := <-o.Messages():
			got[string(m.Data)]++
		case <-ctx.Done():
			t.Fatalf("got %v of %d messages", got, len(msgs))
		}
	}
	// Fetching again delivers nothing twice.
	if err := o.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-o.Messages():
		t.Fatalf("message %q delivered twice", m.Data)
	case <-time.After(2 * time.Second):
	}
}

func TestOwnerRestocksWhenHomeChanges(t *testing.T) {
	tb := newTestbed(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var home atomic.Pointer[sphinx.NodeID]
	home.Store(&sphinx.NodeID{1})
	o, _ := newOwner(t, tb, OwnerConfig{Stock: 4, Home: func() sphinx.NodeID { return *home.Load() }})
	if err := o.Create(ctx); err != nil {
		t.Fatal(err)
	}
	go o.Run(ctx)
	waitUntil(t, "first stock", func() bool { return tb.node.Stock(o.cfg.ID) > 0 })
	time.Sleep(1500 * time.Millisecond) // Run's first look at the home
	before := tb.node.Stock(o.cfg.ID)
	home.Store(&sphinx.NodeID{2})
	waitUntil(t, "re-stock after the home changed", func() bool { return tb.node.Stock(o.cfg.ID) >= before+4 })
}

// A message put into two mailboxes of one user is delivered once when
// their owners share a Dedup, and twice when they do not.
func TestOwnersSharingDedupDeliverOnce(t *testing.T) {
	tb := newTestbed(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	count := func(dedup *Dedup, msg string) int {
		t.Helper()
		var owners []*Owner
		for range 2 {
			o, _ := newOwner(t, tb, OwnerConfig{Stock: 4, Dedup: dedup})
			if err := o.Create(ctx); err != nil {
				t.Fatal(err)
			}
			go o.Run(ctx)
			owners = append(owners, o)
		}
		for _, o := range owners {
			waitUntil(t, "stock", func() bool { return tb.node.Stock(o.cfg.ID) > 0 })
			if _, err := Put(ctx, tbMix{tb, tb.newUser()}, tb.codec, sphinx.NodeID{}, o.cfg.ID, 7, []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		// Both pushes arrive within a second here; then one fetch each
		// shows nothing is held back.
		deadline := time.After(3 * time.Second)
		for _, o := range owners {
			if err := o.Fetch(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for {
			select {
			case m := <-owners[0].Messages():
				n += check(t, m, msg)
			case m := <-owners[1].Messages():
				n += check(t, m, msg)
			case <-deadline:
				return n
			}
		}
	}
	if n := count(NewDedup(0), "to both mailboxes"); n != 1 {
		t.Errorf("shared Dedup: delivered %d times, want once", n)
	}
	if n := count(nil, "to both again"); n != 2 {
		t.Errorf("no Dedup: delivered %d times, want twice (once per mailbox)", n)
	}
}

func check(t *testing.T, m Message, want string) int {
	t.Helper()
	if string(m.Data) != want {
		t.Errorf("delivered %q, want %q", m.Data, want)
	}
	return 1
}

func TestDedupForgetsTheOldest(t *testing.T) {
	d := NewDedup(3)
	ids := make([]MessageID, 5)
	for i := range ids {
		ids[i] = MessageIDOf([]byte{byte(i)})
	}
	for _, id := range ids[:3] {
		if !d.First(id) {
			t.Fatal("a new id counted as seen")
		}
	}
	if d.First(ids[1]) {
		t.Error("a remembered id counted as new")
	}
	d.First(ids[3]) // evicts ids[0]
	d.First(ids[4]) // evicts ids[1]
	if !d.First(ids[0]) {
		t.Error("the oldest id is still remembered past the capacity")
	}
	if d.First(ids[4]) || d.First(ids[3]) {
		t.Error("recent ids forgotten")
	}
	if len(d.seen) != 3 {
		t.Errorf("remembers %d ids, want 3", len(d.seen))
	}
}

// captureMix records what an owner sends.
type captureMix struct {
	mu   sync.Mutex
	sent [][]byte
}

func (m *captureMix) Send(_ context.Context, _ client.Destination, p []byte) (client.Sent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, append([]byte(nil), p...))
	return client.Sent{}, nil
}
func (m *captureMix) NewSURB(context.Context) (client.SURB, error) { return client.SURB{}, nil }
func (m *captureMix) PayloadSize() int                             { return 2030 }
func (m *captureMix) take() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sent
	m.sent = nil
	return s
}

// However many messages an owner received, its deletions fit in requests,
// name every message, and stop naming it after deleteRepeats filters.
func TestDeleteSplitsAndForgets(t *testing.T) {
	codec := CodecFor(sphinx.DefaultGeometry())
	mix := &captureMix{}
	var box ID
	rand.Read(box[:])
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	o := NewOwner(OwnerConfig{Mix: mix, Codec: codec, ID: box, Type: 7, Key: key})
	ctx := context.Background()
	go func() {
		for range o.Messages() {
		}
	}()
	const n = 1500
	var ids []MessageID
	for seq := uint64(1); seq <= n; seq++ {
		data := []byte(fmt.Sprintf("message %d", seq))
		ids = append(ids, MessageIDOf(data))
		b, err := codec.EncodeResponse(&Response{Op: OpDeliver, Mailbox: box, Messages: []Message{{Seq: seq, Data: data}}})
		if err != nil {
			t.Fatal(err)
		}
		if !o.Handle(ctx, b) {
			t.Fatal("owner refused its delivery")
		}
	}
	per := o.perDelete
	if per == 0 {
		t.Fatal("no id fits a deletion request")
	}
	t.Logf("%d ids per deletion request", per)
	for round := range deleteRepeats {
		if err := o.Delete(ctx); err != nil {
			t.Fatalf("delete %d: %v", round, err)
		}
		reqs := mix.take()
		if want := (n + per - 1) / per; len(reqs) != want {
			t.Fatalf("round %d: %d requests, want %d", round, len(reqs), want)
		}
		var filters []*DeletionFilter
		for _, b := range reqs {
			if len(b) > codec.MaxSize {
				t.Fatalf("request of %d bytes, at most %d", len(b), codec.MaxSize)
			}
			r, _, err := codec.DecodeRequest(b)
			if err != nil || r.Op != OpDelete {
				t.Fatalf("request %v: %v", r, err)
			}
			f := new(DeletionFilter)
			if err := f.UnmarshalBinary(r.Filter); err != nil {
				t.Fatal(err)
			}
			filters = append(filters, f)
		}
		for _, id := range ids {
			found := false
			for _, f := range filters {
				found = found || f.Contains(id)
			}
			if !found {
				t.Fatalf("round %d: message %x in no filter", round, id[:4])
			}
		}
	}
	if err := o.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if reqs := mix.take(); len(reqs) != 0 {
		t.Errorf("%d deletion requests after every message was named %d times", len(reqs), deleteRepeats)
	}
}

// With DeleteEvery, Run deletes at the node what the owner handed out.
func TestOwnerDeletesWhatItDelivered(t *testing.T) {
	tb := newTestbed(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o, _ := newOwner(t, tb, OwnerConfig{Stock: 4, DeleteEvery: 300 * time.Millisecond})
	if err := o.Create(ctx); err != nil {
		t.Fatal(err)
	}
	go o.Run(ctx)
	for _, m := range []string{"one", "two", "three"} {
		if _, err := Put(ctx, tbMix{tb, tb.newUser()}, tb.codec, sphinx.NodeID{}, o.cfg.ID, 7, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() int {
		ms, err := tb.store.Fetch(o.cfg.ID, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	waitUntil(t, "three messages stored", func() bool { return stored() == 3 })
	for range 3 {
		select {
		case <-o.Messages():
		case <-ctx.Done():
			t.Fatal("messages not delivered")
		}
	}
	waitUntil(t, "the delivered messages deleted at the node", func() bool { return stored() == 0 })
}
