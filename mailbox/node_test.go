package mailbox

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// mixNode is a relay pipeline on a real libp2p host on loopback.
type mixNode struct {
	host  *transport.Host
	relay atomic.Pointer[relay.Relay]
	hop   sphinx.Hop
	// from counts the packets received, by sending node (what the link
	// shows this relay).
	from sync.Map // sphinx.NodeID → *atomic.Int64
}

// receivedFrom is how many packets n received from the node id.
func (n *mixNode) receivedFrom(id sphinx.NodeID) int64 {
	if c, ok := n.from.Load(id); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

func newMixNode(t testing.TB, f *sphinx.Format, local relay.Local, noForward bool, send func(ctx context.Context, h *transport.Host, to sphinx.NodeID, pkt []byte) error) *mixNode {
	t.Helper()
	return newMixNodeQueue(t, f, local, noForward, send, 4096)
}

// newMixNodeQueue is newMixNode with a send queue of queue packets per peer.
func newMixNodeQueue(t testing.TB, f *sphinx.Format, local relay.Local, noForward bool, send func(ctx context.Context, h *transport.Host, to sphinx.NodeID, pkt []byte) error, queue int) *mixNode {
	t.Helper()
	n := &mixNode{}
	idk, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	n.host, err = transport.New(context.Background(), transport.Config{
		Identity: idk, PacketSize: f.Geometry().PacketSize(), SendQueue: queue,
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Handler: func(from transport.NodeID, pkt []byte) {
			c, _ := n.from.LoadOrStore(sphinx.NodeID(from), new(atomic.Int64))
			c.(*atomic.Int64).Add(1)
			if r := n.relay.Load(); r != nil {
				r.HandlePacket(sphinx.NodeID(from), pkt)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.host.Close() })
	key, pub, err := sphinx.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n.hop = sphinx.Hop{ID: sphinx.NodeID(n.host.ID()), Key: pub}
	db, err := relay.OpenReplayDB(t.TempDir(), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := relay.NewKeyring(1, relay.EpochKey{Epoch: 1, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{
		Format: f, Keys: keys, Replay: db, Local: local, NoForward: noForward,
		Link: relay.LinkFunc(func(ctx context.Context, to sphinx.NodeID, pkt []byte) error {
			return send(ctx, n.host, to, pkt)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	n.relay.Store(r)
	t.Cleanup(func() { r.Close(); db.Close() })
	return n
}

func hostSend(ctx context.Context, h *transport.Host, to sphinx.NodeID, pkt []byte) error {
	return h.Send(ctx, transport.NodeID(to), pkt)
}

// user is a client of the testbed: SURBs it makes end at the home relay
// with its token, and the home relay's deliveries for that token are
// opened with the SURB's reply keys and decoded into responses.
type user struct {
	token   sphinx.DeliveryToken
	key     ed25519.PrivateKey
	ch      chan *Response
	offline atomic.Bool
	lost    atomic.Int64
	pending []*Response // received while waiting for another kind
	// raw, if set, takes the user's deliveries undecoded (an Owner's
	// Handle) instead of ch.
	raw func(body []byte)
}

// testbed: three relays L1, L2, L3, a home relay, a mailbox node whose
// receive path is a relay pipeline, and the hosts of the users that send
// requests — every packet a real Sphinx packet over libp2p on loopback.
type testbed struct {
	t      *testing.T
	f      *sphinx.Format
	codec  Codec
	mix    [3]*mixNode
	home   *mixNode
	mbox   *mixNode
	sender *transport.Host
	node   *Node
	store  *Store
	dbPath string
	epoch  atomic.Uint64
	// first is the node's NodeConfig.FirstHop: L1 (mix[0]) in epoch 1;
	// tests may Set more.
	first FirstHops
	// beforeReply, if set, runs before the node sends each reply.
	beforeReply atomic.Pointer[func()]
	// loop, if set, is the mailbox node's Local.Loop (its cover's
	// Returned).
	loop atomic.Pointer[func(sphinx.LoopID, []byte)]

	mu    sync.Mutex
	keys  map[sphinx.SURBID]*sphinx.ReplyKeys
	users map[sphinx.DeliveryToken]*user
	types map[ID]Type  // of the mailboxes created through send
	bad   atomic.Int64 // deliveries that did not open or decode
}

func newTestbed(t *testing.T, storeCfg Config) *testbed {
	t.Helper()
	return newTestbedQueue(t, storeCfg, 4096)
}

// newTestbedQueue is newTestbed whose mailbox node's host queues at most
// queue packets per peer.
func newTestbedQueue(t *testing.T, storeCfg Config, queue int) *testbed {
	t.Helper()
	return newTestbedWork(t, storeCfg, queue, 0)
}

// newTestbedWork is newTestbedQueue whose node requires putWork bits of
// work on every Put (NodeConfig.PutWork).
func newTestbedWork(t *testing.T, storeCfg Config, queue, putWork int) *testbed {
	t.Helper()
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		t.Fatal(err)
	}
	tb := &testbed{t: t, f: f, codec: CodecFor(f.Geometry()), keys: map[sphinx.SURBID]*sphinx.ReplyKeys{}, users: map[sphinx.DeliveryToken]*user{}, types: map[ID]Type{}}
	tb.epoch.Store(1)
	for i := range tb.mix {
		tb.mix[i] = newMixNode(t, f, relay.Local{}, false, hostSend)
	}
	tb.home = newMixNode(t, f, relay.Local{Client: tb.deliver}, false, hostSend)
	// L1 is the only first-stratum relay.
	tb.first.Set(1, []sphinx.NodeID{tb.mix[0].hop.ID})
	tb.dbPath = filepath.Join(t.TempDir(), "mailbox.db")
	if tb.store, err = OpenStore(tb.dbPath, storeCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.store.Close() })
	var mboxHost atomic.Pointer[transport.Host]
	tb.node, err = NewNode(NodeConfig{
		Store: tb.store, Format: f, Epoch: tb.epoch.Load, PutWork: putWork,
		FirstHop: tb.first.Allowed,
		// As node.RunMailbox: the transport's TrySend, which never waits.
		Send: func(_ context.Context, to sphinx.NodeID, pkt []byte) error {
			if fn := tb.beforeReply.Load(); fn != nil {
				(*fn)()
			}
			return mboxHost.Load().TrySend(transport.NodeID(to), pkt)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	loop := func(id sphinx.LoopID, payload []byte) {
		if fn := tb.loop.Load(); fn != nil {
			(*fn)(id, payload)
		}
	}
	tb.mbox = newMixNodeQueue(t, f, relay.Local{Mailbox: tb.node.Handle, Loop: loop}, true, func(context.Context, *transport.Host, sphinx.NodeID, []byte) error {
		t.Error("the mailbox node forwarded a packet")
		return nil
	}, queue)
	mboxHost.Store(tb.mbox.host)
	idk, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	tb.sender, err = transport.New(context.Background(), transport.Config{Identity: idk, PacketSize: f.Geometry().PacketSize(), NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.sender.Close() })
	hosts := []*transport.Host{tb.sender, tb.home.host, tb.mbox.host, tb.mix[0].host, tb.mix[1].host, tb.mix[2].host}
	for _, a := range hosts {
		for _, b := range hosts[1:] {
			if a != b {
				if err := a.AddPeer(b.PeerInfo()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.node.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tb
}

// deliver is the home relay's Local.Client.
func (tb *testbed) deliver(token sphinx.DeliveryToken, id sphinx.SURBID, payload []byte) {
	tb.mu.Lock()
	u, keys := tb.users[token], tb.keys[id]
	delete(tb.keys, id)
	tb.mu.Unlock()
	if u == nil || keys == nil {
		tb.bad.Add(1)
		return
	}
	if u.offline.Load() {
		u.lost.Add(1)
		return
	}
	msg, err := tb.f.OpenReply(keys, bytes.Clone(payload))
	if err != nil {
		tb.bad.Add(1)
		return
	}
	body, err := client.Unpad(msg)
	if err != nil {
		tb.bad.Add(1)
		return
	}
	if u.raw != nil {
		u.raw(bytes.Clone(body))
		return
	}
	r, err := tb.codec.DecodeResponse(bytes.Clone(body))
	if err != nil {
		tb.bad.Add(1)
		return
	}
	u.ch <- r
}

func (tb *testbed) newUser() *user {
	u := &user{ch: make(chan *Response, 1024)}
	rand.Read(u.token[:])
	_, u.key, _ = ed25519.GenerateKey(rand.Reader)
	tb.mu.Lock()
	tb.users[u.token] = u
	tb.mu.Unlock()
	return u
}

// surbs makes n SURBs whose replies travel L1, L2, L3 to u's home.
func (tb *testbed) surbs(u *user, n int) [][]byte {
	tb.t.Helper()
	path := []sphinx.Hop{tb.mix[0].hop, tb.mix[1].hop, tb.mix[2].hop, tb.home.hop}
	out := make([][]byte, n)
	for i := range out {
		s, keys, _, err := tb.f.NewSURB(rand.Reader, path, u.token, sphinx.DelayPolicy{})
		if err != nil {
			tb.t.Fatal(err)
		}
		if out[i], err = s.MarshalBinary(); err != nil {
			tb.t.Fatal(err)
		}
		tb.mu.Lock()
		tb.keys[keys.ID] = keys
		tb.mu.Unlock()
	}
	return out
}

// box is the id of u's mailbox of type typ: the one its key derives to.
func (u *user) box(typ Type) ID { return Ed25519ID(typ, u.key.Public().(ed25519.PublicKey)) }

// send sends r (signed with u's key for signed ops) to the mailbox node
// through L1, L2, L3 in a forward packet ending in DeliverMailbox. Left
// zero, a signed op's time and scheme are filled in (now, Ed25519), the
// epoch of stocked SURBs is the testbed's, and the type of a request for a
// mailbox created through send is the mailbox's.
func (tb *testbed) send(u *user, r *Request) {
	tb.t.Helper()
	if r.Op.signed() {
		r.Time = uint64(time.Now().Unix())
		if r.Scheme == 0 {
			r.Scheme = Ed25519Auth{}.ID()
		}
	}
	if r.Epoch == 0 && (r.Op == OpCreate || r.Op == OpStock || r.Op == OpFetch) {
		r.Epoch = tb.epoch.Load()
	}
	tb.mu.Lock()
	if r.Op == OpCreate {
		tb.types[r.Mailbox] = r.Type
	} else if typ, ok := tb.types[r.Mailbox]; ok && r.Type == 0 {
		r.Type = typ
	}
	tb.mu.Unlock()
	b, err := tb.codec.EncodeRequest(r, func(msg []byte) ([]byte, error) { return ed25519.Sign(u.key, msg), nil })
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.sendRaw(b)
}

func (tb *testbed) sendRaw(body []byte) {
	tb.t.Helper()
	path := []sphinx.Hop{tb.mix[0].hop, tb.mix[1].hop, tb.mix[2].hop, tb.mbox.hop}
	pkt, _, err := tb.f.NewPacket(rand.Reader, path, sphinx.DeliverToMailbox(), sphinx.DelayPolicy{}, client.Pad(tb.f.Geometry().PayloadCapacity(), body))
	if err != nil {
		tb.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tb.sender.Send(ctx, transport.NodeID(tb.mix[0].hop.ID), pkt); err != nil {
		tb.t.Fatal(err)
	}
}

// next waits for u's next response.
func (tb *testbed) next(u *user) *Response {
	tb.t.Helper()
	select {
	case r := <-u.ch:
		return r
	case <-time.After(20 * time.Second):
		tb.t.Fatalf("no response (bad deliveries %d, node dropped %v)", tb.bad.Load(), tb.dropped())
		return nil
	}
}

// nextOp waits for u's next response of kind op; responses of other kinds
// received on the way wait for later calls (replies may overtake each
// other in the relays).
func (tb *testbed) nextOp(u *user, op Op) *Response {
	tb.t.Helper()
	for i, r := range u.pending {
		if r.Op == op {
			u.pending = append(u.pending[:i], u.pending[i+1:]...)
			return r
		}
	}
	for {
		r := tb.next(u)
		if r.Op == op {
			return r
		}
		u.pending = append(u.pending, r)
	}
}

func (tb *testbed) dropped() map[string]float64 {
	out := map[string]float64{}
	for _, reason := range []string{"malformed", "refused", "quota", "exists", "stale", "internal", "busy", "bad_surb", "send", "first_hop", "no_mailbox", "surb_epoch", "work"} {
		if v := testutil.ToFloat64(tb.node.m.dropped.WithLabelValues(reason)); v > 0 {
			out[reason] = v
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func expectOK(t *testing.T, r *Response, op Op) {
	t.Helper()
	if r.Op != OpOK || r.For != op {
		t.Fatalf("got %s for %s (code %d %q), want ok for %s", opName(r.Op), opName(r.For), r.Code, r.Text, opName(op))
	}
}

func messagesOf(rs ...*Response) [][]byte {
	var out [][]byte
	for _, r := range rs {
		if r.Op == OpDeliver {
			for _, m := range r.Messages {
				out = append(out, m.Data)
			}
		}
	}
	return out
}

// TestNodeOverMixnet runs the mailbox protocol with real Sphinx packets over
// real relays: the owner creates and stocks a mailbox, a sender puts
// messages and gets acknowledgements through its own SURB, the node pushes
// them to the owner through the stocked SURBs, asks for more SURBs before
// running out, serves a fetch after the owner was offline, deletes by bloom
// filter, refuses strangers without revealing whether a mailbox exists,
// answers quota rejections and drops SURBs of past epochs.
func TestNodeOverMixnet(t *testing.T) {
	tb := newTestbed(t, Config{MaxMessages: 8})
	owner, sender := tb.newUser(), tb.newUser()
	box := owner.box(7)
	msg := func(i int) []byte { return []byte("message " + string(rune('a'+i)) + " for the owner") }

	t.Run("create is acknowledged and stocks the SURBs", func(t *testing.T) {
		tb.send(owner, &Request{Op: OpCreate, Mailbox: box, Type: 7, Plugin: Ed25519Auth{}.ID(),
			Credential: owner.key.Public().(ed25519.PublicKey), SURBs: tb.surbs(owner, 5)})
		expectOK(t, tb.next(owner), OpCreate)
		// One SURB carried the answer; four are in stock.
		waitUntil(t, "the stock holds 4 SURBs", func() bool { return tb.node.Stock(box) == 4 })
		if typ, _, err := tb.store.Auth(box); err != nil || typ != 7 {
			t.Fatalf("stored mailbox type %d, %v", typ, err)
		}
	})

	t.Run("a put is acknowledged to its sender and pushed to the owner", func(t *testing.T) {
		tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: msg(1)})
		ack := tb.next(sender)
		expectOK(t, ack, OpPut)
		if want := MessageIDOf(msg(1)); !bytes.Equal(ack.Detail, want[:]) {
			t.Fatalf("ack names message %x, want %x", ack.Detail, want)
		}
		d := tb.nextOp(owner, OpDeliver)
		if len(d.Messages) != 1 || !bytes.Equal(d.Messages[0].Data, msg(1)) || d.Messages[0].Seq != 1 {
			t.Fatalf("pushed %+v", d.Messages)
		}
	})

	t.Run("the node asks for SURBs before its stock runs out and keeps a reserve", func(t *testing.T) {
		// The push left 3 (< LowWater 4): a NeedSURBs spent one, 2 left.
		if r := tb.nextOp(owner, OpNeedSURBs); r.Stock != 2 {
			t.Fatalf("NeedSURBs says stock %d, want 2", r.Stock)
		}
		for i := 2; i <= 3; i++ {
			tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: msg(i)})
			expectOK(t, tb.next(sender), OpPut)
		}
		// Message 2 took one SURB; message 3 waits: the last SURB is
		// the reserve, and the node already asked.
		d := tb.nextOp(owner, OpDeliver)
		if got := messagesOf(d); len(got) != 1 || !bytes.Equal(got[0], msg(2)) {
			t.Fatalf("pushed %q, want message 2", got)
		}
		if s := tb.node.Stock(box); s != DefaultReserve {
			t.Fatalf("stock %d, want the reserve %d", s, DefaultReserve)
		}
		ms, err := tb.store.Fetch(box, 0, 10)
		if err != nil || len(ms) != 3 || ms[2].Delivered {
			t.Fatalf("store: %d messages, %v; message 3 must wait undelivered", len(ms), err)
		}
		// Restocking delivers what waited.
		tb.send(owner, &Request{Op: OpStock, Mailbox: box, SURBs: tb.surbs(owner, 5)})
		d = tb.nextOp(owner, OpDeliver)
		if got := messagesOf(d); len(got) != 1 || !bytes.Equal(got[0], msg(3)) {
			t.Fatalf("pushed %q after restocking, want message 3", got)
		}
		waitUntil(t, "the stock holds 5 SURBs", func() bool { return tb.node.Stock(box) == 5 })
	})

	t.Run("an owner back from offline fetches what it missed", func(t *testing.T) {
		owner.offline.Store(true)
		for i := 4; i <= 5; i++ {
			tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: msg(i)})
			expectOK(t, tb.next(sender), OpPut)
		}
		// Both pushes and the NeedSURBs (the stock fell to 3) are lost.
		waitUntil(t, "the replies were lost", func() bool { return owner.lost.Load() == 3 })
		owner.offline.Store(false)
		tb.send(owner, &Request{Op: OpFetch, Mailbox: box, After: 3, SURBs: tb.surbs(owner, 2)})
		d := tb.nextOp(owner, OpDeliver)
		if got := messagesOf(d); len(got) != 2 || !bytes.Equal(got[0], msg(4)) || !bytes.Equal(got[1], msg(5)) {
			t.Fatalf("fetched %q, want messages 4 and 5 in one reply", got)
		}
		if d.Messages[0].Seq != 4 || d.Messages[1].Seq != 5 {
			t.Fatalf("fetched seqs %d, %d", d.Messages[0].Seq, d.Messages[1].Seq)
		}
	})

	t.Run("a deletion filter removes what the owner read", func(t *testing.T) {
		f, err := NewDeletionFilter(rand.Reader, 4, 1e-6)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 4; i++ {
			f.Add(MessageIDOf(msg(i)))
		}
		fb, _ := f.MarshalBinary()
		tb.send(owner, &Request{Op: OpDelete, Mailbox: box, Filter: fb})
		waitUntil(t, "messages 1–4 are deleted", func() bool {
			ms, err := tb.store.Fetch(box, 0, 10)
			return err == nil && len(ms) == 1 && bytes.Equal(ms[0].Data, msg(5))
		})
	})

	t.Run("a wrong key and an unknown mailbox get the same refusal", func(t *testing.T) {
		stranger := tb.newUser()
		stock := tb.node.Stock(box)
		tb.send(stranger, &Request{Op: OpStock, Mailbox: box, SURBs: tb.surbs(stranger, 1)})
		wrongKey := tb.next(stranger)
		var unknown ID
		rand.Read(unknown[:])
		tb.send(stranger, &Request{Op: OpFetch, Mailbox: unknown, SURBs: tb.surbs(stranger, 1)})
		noBox := tb.next(stranger)
		for _, r := range []*Response{wrongKey, noBox} {
			if r.Op != OpError || r.Code != CodeRefused {
				t.Fatalf("got %s code %d, want a refusal", opName(r.Op), r.Code)
			}
		}
		if wrongKey.Text != noBox.Text {
			t.Fatalf("refusals differ: %q vs %q", wrongKey.Text, noBox.Text)
		}
		if s := tb.node.Stock(box); s != stock || s == 0 {
			t.Fatalf("stock %d, was %d: a stranger's SURBs must not join it", s, stock)
		}
	})

	t.Run("a put over quota is refused through the sender's SURB", func(t *testing.T) {
		var full ID
		rand.Read(full[:])
		if err := tb.store.Create(full, 1, append([]byte{1}, owner.key.Public().(ed25519.PublicKey)...)); err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			if _, err := tb.store.Put(full, []byte{byte(i)}, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		tb.send(sender, &Request{Op: OpPut, Mailbox: full, Type: 1, SURBs: tb.surbs(sender, 1), Message: []byte("one too many")})
		r := tb.next(sender)
		if r.Op != OpError || r.Code != CodeQuota || r.For != OpPut || r.Mailbox != full {
			t.Fatalf("got %s code %d for %s, want a quota error", opName(r.Op), r.Code, opName(r.For))
		}
		// A put without a SURB too large to ever fit in a push is
		// dropped and counted, not stored.
		malformed := testutil.ToFloat64(tb.node.m.dropped.WithLabelValues("malformed"))
		big := bytes.Repeat([]byte{1}, tb.codec.MaxSize-DeliverOverhead+1)
		tb.send(sender, &Request{Op: OpPut, Mailbox: box, Message: big})
		waitUntil(t, "the oversized put is dropped", func() bool {
			return testutil.ToFloat64(tb.node.m.dropped.WithLabelValues("malformed")) == malformed+1
		})
		if ms, _ := tb.store.Fetch(box, 0, 100); len(ms) != 1 {
			t.Fatalf("%d messages stored, want only message 5", len(ms))
		}
	})

	t.Run("SURBs of a past epoch are dropped", func(t *testing.T) {
		if tb.node.Stock(box) == 0 {
			t.Fatal("no stock to expire")
		}
		// The SURBs are of epoch 1: usable in epoch 2 (relays keep the
		// previous epoch's keys), dropped in epoch 3.
		tb.epoch.Add(1)
		if s := tb.node.Stock(box); s == 0 {
			t.Fatal("SURBs of the previous epoch were dropped")
		}
		tb.epoch.Add(1)
		if s := tb.node.Stock(box); s != 0 {
			t.Fatalf("stock %d two epochs later, want 0", s)
		}
		tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: msg(9)})
		expectOK(t, tb.next(sender), OpPut)
		ms, err := tb.store.Fetch(box, 0, 10)
		if err != nil || len(ms) == 0 || !bytes.Equal(ms[len(ms)-1].Data, msg(9)) || ms[len(ms)-1].Delivered {
			t.Fatalf("the put after the epoch change must be stored and not pushed (%v)", err)
		}
	})

	if n := tb.bad.Load(); n != 0 {
		t.Errorf("%d deliveries did not open or decode", n)
	}
}

// TestNodeAcksOnlyWhatIsOnDisk: when the node sends its acknowledgement of
// a put, the message is already in the database file; and when the store
// fails, the sender gets an error, never an acknowledgement.
func TestNodeAcksOnlyWhatIsOnDisk(t *testing.T) {
	tb := newTestbed(t, Config{})
	owner, sender := tb.newUser(), tb.newUser()
	box := owner.box(0)
	// No stock: the only reply to the put is its acknowledgement.
	tb.send(owner, &Request{Op: OpCreate, Mailbox: box, Plugin: 1, Credential: owner.key.Public().(ed25519.PublicKey), SURBs: tb.surbs(owner, 1)})
	expectOK(t, tb.next(owner), OpCreate)

	var snaps [][]byte
	var mu sync.Mutex
	snap := func() {
		f, err := os.Open(tb.dbPath)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		snaps = append(snaps, b)
		mu.Unlock()
	}
	tb.beforeReply.Store(&snap)
	m := []byte("acknowledged means on disk")
	tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: m})
	expectOK(t, tb.next(sender), OpPut)
	tb.beforeReply.Store(nil)
	mu.Lock()
	if len(snaps) != 1 {
		t.Fatalf("%d replies, want only the ack", len(snaps))
	}
	copyPath := filepath.Join(t.TempDir(), "at-ack.db")
	if err := os.WriteFile(copyPath, snaps[0], 0o600); err != nil {
		t.Fatal(err)
	}
	mu.Unlock()
	s, err := OpenStore(copyPath, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := s.Fetch(box, 0, 10)
	if err != nil || len(ms) != 1 || !bytes.Equal(ms[0].Data, m) {
		t.Fatalf("the database file at the time of the ack holds %d messages (%v), want the acknowledged one", len(ms), err)
	}

	// A store that fails refuses instead of acknowledging.
	tb.store.Close()
	tb.send(sender, &Request{Op: OpPut, Mailbox: box, SURBs: tb.surbs(sender, 1), Message: []byte("not stored")})
	if r := tb.next(sender); r.Op != OpError || r.Code != CodeInternal {
		t.Fatalf("got %s code %d from a failed store, want an internal error", opName(r.Op), r.Code)
	}
}
