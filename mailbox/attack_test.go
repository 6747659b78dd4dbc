package mailbox

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/sphinx"
)

// unitNode is a node over a real bbolt file whose replies are counted, not
// sent (FirstHop allows sphinx.NodeID{9}, randomSURB's first hop here).
type unitNode struct {
	*Node
	store  *Store
	path   string
	format *sphinx.Format
	codec  Codec
	epoch  atomic.Uint64
	sent   atomic.Int64
}

func newUnitNode(t *testing.T, path string, epoch uint64) *unitNode {
	t.Helper()
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		t.Fatal(err)
	}
	u := &unitNode{path: path, format: f, codec: CodecFor(f.Geometry())}
	u.epoch.Store(epoch)
	if u.store, err = OpenStore(path, Config{MaxMessages: 1 << 20, MaxBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	u.Node, err = NewNode(NodeConfig{Store: u.store, Format: f, Epoch: u.epoch.Load,
		FirstHop: func(id sphinx.NodeID) bool { return id == sphinx.NodeID{9} },
		Send:     func(context.Context, sphinx.NodeID, []byte) error { u.sent.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (u *unitNode) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (u *unitNode) request(t *testing.T, r *Request, key ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := u.codec.EncodeRequest(r, Ed25519Signer(key))
	if err != nil {
		t.Fatal(err)
	}
	return client.Pad(u.format.Geometry().PayloadCapacity(), b)
}

// TestPushFindsNewItemsBehindDeliveredOnes: 1,200 messages delivered and
// not deleted (an owner that never deletes) used to fill the push's scan
// of the 1,000 oldest, so a new put was never pushed. The push reads the
// undelivered index now.
func TestPushFindsNewItemsBehindDeliveredOnes(t *testing.T) {
	tb := newTestbed(t, Config{MaxMessages: 5000})
	owner, sender := tb.newUser(), tb.newUser()
	box := owner.box(3)
	tb.send(owner, &Request{Op: OpCreate, Mailbox: box, Type: 3, Plugin: 1, Credential: owner.key.Public().(ed25519.PublicKey), SURBs: tb.surbs(owner, 5)})
	expectOK(t, tb.next(owner), OpCreate)
	var wg sync.WaitGroup
	seqs := make(chan uint64, 1200)
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < 1200; i += 16 {
				if _, err := tb.store.Put(box, fmt.Appendf(nil, "old %d", i), time.Now()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(seqs)
	all := make([]uint64, 1200)
	for i := range all {
		all[i] = uint64(i + 1)
	}
	if err := tb.store.MarkDelivered(box, all...); err != nil {
		t.Fatal(err)
	}
	tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: []byte("the new one")})
	expectOK(t, tb.next(sender), OpPut)
	d := tb.nextOp(owner, OpDeliver)
	if got := messagesOf(d); len(got) != 1 || string(got[0]) != "the new one" || d.Messages[0].Seq != 1201 {
		t.Fatalf("pushed %q, want the new message (seq 1201)", got)
	}
}

// TestFloodAtOneMailboxDoesNotStarveOthers: an attacker floods one mailbox
// id (a real mailbox: each put costs an fsync) and 32 ids sharing the
// victim's first byte (the old rule's worker), while an honest sender puts
// 30 messages into a victim mailbox that shares the flooder's worker (the
// worst case; the attacker cannot choose it without the node's key). Every
// honest put is stored and acknowledged; the flood is what gets dropped.
func TestFloodAtOneMailboxDoesNotStarveOthers(t *testing.T) {
	u := newUnitNode(t, filepath.Join(t.TempDir(), "mailbox.db"), 1)
	defer u.store.Close()
	var flood, victim ID
	rand.Read(flood[:])
	for {
		rand.Read(victim[:])
		if pick(u.seed, victim, len(u.in)) == pick(u.seed, flood, len(u.in)) {
			break
		}
	}
	for _, id := range []ID{flood, victim} {
		if err := u.store.Create(id, 1, []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	ground := make([]ID, 32)
	for i := range ground {
		rand.Read(ground[i][:])
		ground[i][0] = victim[0]
		if err := u.store.Create(ground[i], 1, []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	u.run(t)
	surb := randomSURB(t, u.format, sphinx.NodeID{9})
	stop := make(chan struct{})
	var floods atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := flood
			if i%4 == 3 {
				id = ground[i%len(ground)]
			}
			u.Handle(u.request(t, &Request{Op: OpPut, Mailbox: id, Type: 1, Message: fmt.Appendf(nil, "junk %d", i)}, nil))
			floods.Add(1)
		}
	})
	start := time.Now()
	for i := range 30 {
		u.Handle(u.request(t, &Request{Op: OpPut, Mailbox: victim, Type: 1, SURBs: [][]byte{surb}, Message: fmt.Appendf(nil, "honest %d", i)}, nil))
		time.Sleep(20 * time.Millisecond)
	}
	waitUntil(t, "the honest puts are stored", func() bool {
		ms, err := u.store.Fetch(victim, 0, 100)
		return err == nil && len(ms) == 30
	})
	took := time.Since(start)
	close(stop)
	wg.Wait()
	busy := testutil.ToFloat64(u.m.dropped.WithLabelValues("busy"))
	if busy == 0 {
		t.Fatalf("%d flood requests and none dropped: the flood did not fill the worker", floods.Load())
	}
	t.Logf("%d flood requests, %.0f dropped; 30 honest puts stored in %v", floods.Load(), busy, took)
}

// TestSURBStockSurvivesRestartAndExpiresByItsEpoch: stocked SURBs are in
// the bbolt file, labelled with the epoch their request names; a restart
// keeps them, spent ones stay spent, and they are dropped (from memory
// and from the file) once their epoch is older than the previous one —
// whatever epoch the node was in when they arrived.
func TestSURBStockSurvivesRestartAndExpiresByItsEpoch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mailbox.db")
	u := newUnitNode(t, path, 5)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	box := Ed25519ID(1, pub)
	surb := randomSURB(t, u.format, sphinx.NodeID{9})
	five := [][]byte{surb, surb, surb, surb, surb}
	now := uint64(time.Now().Unix())
	u.handle(u.request(t, &Request{Op: OpCreate, Mailbox: box, Type: 1, Plugin: 1, Credential: pub, Epoch: 5, SURBs: five}, nil))
	u.handle(u.request(t, &Request{Op: OpStock, Mailbox: box, Type: 1, Time: now, Scheme: 1, Epoch: 4, SURBs: five}, key))
	u.handle(u.request(t, &Request{Op: OpStock, Mailbox: box, Type: 1, Time: now, Scheme: 1, Epoch: 3, SURBs: five}, key)) // too old
	u.handle(u.request(t, &Request{Op: OpStock, Mailbox: box, Type: 1, Time: now, Scheme: 1, Epoch: 7, SURBs: five}, key)) // too far ahead
	if s := u.Stock(box); s != 9 {
		t.Fatalf("stock %d, want 4 (create) + 5 (epoch 4)", s)
	}
	if got := testutil.ToFloat64(u.m.dropped.WithLabelValues("surb_epoch")); got != 10 {
		t.Fatalf("%v SURBs refused for their epoch, want 10", got)
	}
	// Spend two: the newest of the newest epoch go first.
	for range 2 {
		if _, _, ok := u.take(box, 0); !ok {
			t.Fatal("no SURB to take")
		}
	}
	u.flushMarks()
	u.store.Close()

	u = newUnitNode(t, path, 5)
	if s := u.Stock(box); s != 7 {
		t.Fatalf("stock %d after a restart, want 7", s)
	}
	byEpoch := map[uint64]int{}
	for _, x := range u.stock[box] {
		byEpoch[x.Epoch]++
	}
	if byEpoch[5] != 2 || byEpoch[4] != 5 {
		t.Fatalf("stock by epoch %v, want 2 of epoch 5 (2 spent), 5 of epoch 4", byEpoch)
	}
	// Epoch 6: the epoch-4 SURBs (stocked during epoch 5) are dead.
	u.epoch.Store(6)
	u.sweep()
	u.flushMarks()
	if s := u.Stock(box); s != 2 {
		t.Fatalf("stock %d in epoch 6, want the 2 of epoch 5", s)
	}
	u.store.Close()
	u = newUnitNode(t, path, 6)
	defer u.store.Close()
	ss, err := u.store.SURBs()
	if err != nil || len(ss[box]) != 2 {
		t.Fatalf("the file holds %d SURBs (%v), want 2", len(ss[box]), err)
	}
}

// TestTypeIsEnforced: a mailbox's type is checked on every request: a put
// of another type is not stored (and answered as a put to no mailbox), a
// signed request of another type is refused like one with a wrong key.
func TestTypeIsEnforced(t *testing.T) {
	tb := newTestbed(t, Config{})
	owner, sender := tb.newUser(), tb.newUser()
	box := owner.box(7)
	tb.send(owner, &Request{Op: OpCreate, Mailbox: box, Type: 7, Plugin: 1, Credential: owner.key.Public().(ed25519.PublicKey), SURBs: tb.surbs(owner, 5)})
	expectOK(t, tb.next(owner), OpCreate)
	stock := tb.node.Stock(box)

	tb.send(sender, &Request{Op: OpPut, Mailbox: box, Type: 8, SURBs: tb.surbs(sender, 1), Message: []byte("wrong type")})
	expectOK(t, tb.next(sender), OpPut)
	tb.send(owner, &Request{Op: OpStock, Mailbox: box, Type: 8, SURBs: tb.surbs(owner, 2)})
	if r := tb.next(owner); r.Op != OpError || r.Code != CodeRefused || r.For != OpStock {
		t.Fatalf("a stock of another type got %s code %d", opName(r.Op), r.Code)
	}
	tb.send(owner, &Request{Op: OpFetch, Mailbox: box, Type: 8, SURBs: tb.surbs(owner, 1)})
	if r := tb.next(owner); r.Op != OpError || r.Code != CodeRefused || r.For != OpFetch {
		t.Fatalf("a fetch of another type got %s code %d", opName(r.Op), r.Code)
	}
	// The right type still works.
	tb.send(sender, &Request{Op: OpPut, Mailbox: box, Type: 7, SURBs: tb.surbs(sender, 1), Message: []byte("right type")})
	expectOK(t, tb.next(sender), OpPut)
	if got := messagesOf(tb.nextOp(owner, OpDeliver)); len(got) != 1 || string(got[0]) != "right type" {
		t.Fatalf("pushed %q", got)
	}
	ms, _ := tb.store.Fetch(box, 0, 10)
	if len(ms) != 1 || tb.node.Stock(box) > stock-1 {
		t.Fatalf("%d messages stored and stock %d (was %d): requests of another type changed the mailbox", len(ms), tb.node.Stock(box), stock)
	}
}

// TestExistenceProbesLearnNothing: an attacker who knows a mailbox id
// probes it and an id that does not exist with every request it can make
// (create with its own key, put with a SURB, put of another type, signed
// stock, fetch and delete): each pair of answers is identical but for the
// id. The owner's mailbox is untouched but for the attacker's stored put,
// and the honest sender's message still reaches the owner.
func TestExistenceProbesLearnNothing(t *testing.T) {
	tb := newTestbed(t, Config{})
	owner, sender, attacker := tb.newUser(), tb.newUser(), tb.newUser()
	known := owner.box(2)
	tb.send(owner, &Request{Op: OpCreate, Mailbox: known, Type: 2, Plugin: 1, Credential: owner.key.Public().(ed25519.PublicKey), SURBs: tb.surbs(owner, 5)})
	expectOK(t, tb.next(owner), OpCreate)
	var unknown ID
	rand.Read(unknown[:])
	apub := attacker.key.Public().(ed25519.PublicKey)
	probes := []func(id ID) *Request{
		func(id ID) *Request {
			return &Request{Op: OpCreate, Mailbox: id, Type: 2, Plugin: 1, Credential: apub, SURBs: tb.surbs(attacker, 2)}
		},
		func(id ID) *Request {
			return &Request{Op: OpPut, Mailbox: id, Type: 2, SURBs: tb.surbs(attacker, 1), Message: []byte("probe")}
		},
		func(id ID) *Request {
			return &Request{Op: OpPut, Mailbox: id, Type: 9, SURBs: tb.surbs(attacker, 1), Message: []byte("probe, type 9")}
		},
		func(id ID) *Request { return &Request{Op: OpStock, Mailbox: id, Type: 2, SURBs: tb.surbs(attacker, 2)} },
		func(id ID) *Request { return &Request{Op: OpFetch, Mailbox: id, Type: 2, SURBs: tb.surbs(attacker, 1)} },
	}
	for i, p := range probes {
		var got [2]*Response
		for j, id := range []ID{known, unknown} {
			tb.send(attacker, p(id))
			got[j] = tb.next(attacker)
			got[j].Mailbox = ID{}
		}
		a, _ := tb.codec.EncodeResponse(got[0])
		b, _ := tb.codec.EncodeResponse(got[1])
		if string(a) != string(b) {
			t.Errorf("probe %d (%s): known id answered %s %d %q, unknown %s %d %q", i, opName(got[0].For), opName(got[0].Op), got[0].Code, got[0].Text, opName(got[1].Op), got[1].Code, got[1].Text)
		}
	}
	if typ, enrol, err := tb.store.Auth(known); err != nil || typ != 2 || string(enrol[1:]) != string(owner.key.Public().(ed25519.PublicKey)) {
		t.Fatal("the probes changed the owner's enrolment")
	}
	if _, _, err := tb.store.Auth(unknown); err == nil {
		t.Fatal("a probe created the unknown mailbox")
	}
	tb.send(sender, &Request{Op: OpPut, Mailbox: known, SURBs: tb.surbs(sender, 1), Message: []byte("honest")})
	expectOK(t, tb.next(sender), OpPut)
	var pushed []string
	for len(pushed) < 2 {
		for _, m := range messagesOf(tb.nextOp(owner, OpDeliver)) {
			pushed = append(pushed, string(m))
		}
	}
	if pushed[len(pushed)-1] != "honest" {
		t.Fatalf("owner received %q", pushed)
	}
}

// TestOwnerTimersAndTimesAreCoarse: the owner's waits are random within
// the documented bounds, and its request times are multiples of
// TimeGranularity that the node accepts.
func TestOwnerTimersAndTimesAreCoarse(t *testing.T) {
	const mean = time.Second
	var sum time.Duration
	seen := map[time.Duration]bool{}
	for range 20000 {
		d := drawWait(mean)
		if d < mean/10 || d > 4*mean {
			t.Fatalf("wait %v outside [%v, %v]", d, mean/10, 4*mean)
		}
		sum += d
		seen[d] = true
	}
	if avg := sum / 20000; avg < 950*time.Millisecond || avg > 1030*time.Millisecond {
		t.Fatalf("mean wait %v, want ≈ 0.99 s", avg)
	}
	if len(seen) < 10000 {
		t.Fatalf("only %d distinct waits", len(seen))
	}
	now := time.Now()
	c := coarseTime(now)
	if c%uint64(TimeGranularity/time.Second) != 0 || now.Unix()-int64(c) >= int64(TimeGranularity/time.Second) {
		t.Fatalf("coarse time %d for %d", c, now.Unix())
	}
	u := newUnitNode(t, filepath.Join(t.TempDir(), "mailbox.db"), 1)
	defer u.store.Close()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	box := Ed25519ID(1, pub)
	if err := u.store.Create(box, 1, append([]byte{1}, pub...)); err != nil {
		t.Fatal(err)
	}
	body, _ := client.Unpad(u.request(t, &Request{Op: OpFetch, Mailbox: box, Type: 1, Time: c, Scheme: 1, Epoch: 1}, key))
	r, signed, err := u.codec.DecodeRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if code, text := u.authorize(r, signed); code != 0 {
		t.Fatalf("a coarse time is refused: %s", text)
	}
}
