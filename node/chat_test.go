package node_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/strata-mix/strata/e2e"
	"github.com/strata-mix/strata/node"
	"github.com/strata-mix/strata/testnet"
)

// cheapKDF keeps the tests' stores fast to open.
var cheapKDF = e2e.KDFParams{Time: 1, Memory: 1024, Threads: 1}

func chatLogger(t *testing.T) *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// startChatNet starts a real local network (chain, 9 relays, 2 mailbox
// nodes) with fast blocks and 5 ms per hop, and returns its chain config
// (its RPC and the root of trust the validator reports).
func startChatNet(t *testing.T, ctx context.Context) node.ChainConfig {
	t.Helper()
	n, err := testnet.Start(ctx, testnet.Config{
		DataDir: t.TempDir(), MeanDelay: 5 * time.Millisecond, BlockInterval: 200 * time.Millisecond,
		EpochBlocks: 600, LambdaP: 20, LambdaL: 2, LambdaD: 2, LambdaM: 2, Logger: chatLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n.Chain()
}

type user struct {
	name string
	dir  string
	*node.Chat
}

func startUser(t *testing.T, ctx context.Context, cc node.ChainConfig, dir, name string) *user {
	t.Helper()
	kdf := cheapKDF
	c, err := node.StartChat(ctx, node.ChatConfig{DataDir: dir, Chain: cc, Passphrase: "pw " + name, KDF: &kdf, Name: name,
		FetchEvery: 3 * time.Second, MaxBackoff: 5 * time.Second, Logger: chatLogger(t)})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	u := &user{name: name, dir: dir, Chat: c}
	t.Cleanup(func() { u.Close() })
	return u
}

func (u *user) card(t *testing.T) *e2e.Card {
	t.Helper()
	code, err := u.Card()
	if err != nil {
		t.Fatal(err)
	}
	c, err := e2e.ParseCode(code)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wait takes events until one matches, or fails after d.
func (u *user) wait(t *testing.T, d time.Duration, what string, match func(node.ChatEvent) bool) node.ChatEvent {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev := <-u.Events():
			if match(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("%s: no %s within %v", u.name, what, d)
		}
	}
}

func (u *user) waitText(t *testing.T, room e2e.RoomID, text string) {
	t.Helper()
	u.wait(t, 20*time.Second, "message "+text, func(ev node.ChatEvent) bool {
		return ev.Kind == e2e.EventMessage && ev.Room == room && ev.Text == text
	})
}

func (u *user) send(t *testing.T, ctx context.Context, room e2e.RoomID, text string) uint64 {
	t.Helper()
	seq, err := u.Send(ctx, room, text)
	if err != nil {
		t.Fatalf("%s: send: %v", u.name, err)
	}
	return seq
}

// status is the delivery status of history entry seq of room.
func (u *user) status(t *testing.T, room e2e.RoomID, seq uint64) e2e.Status {
	t.Helper()
	hist, err := u.Manager().History(room)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range hist {
		if e.Seq == seq {
			return u.Status(room, e)
		}
	}
	t.Fatalf("%s: no history entry #%d", u.name, seq)
	return ""
}

// noneQueued checks that the user's data dir tracks no queued message (and
// keeps no acks.json of earlier versions).
func (u *user) noneQueued(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(u.dir, "queued.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || len(m) > 0 {
		t.Errorf("%s: queued.json after every ack: %s (%v)", u.name, b, err)
	}
	if _, err := os.Stat(filepath.Join(u.dir, "acks.json")); err == nil {
		t.Errorf("%s: acks.json written", u.name)
	}
}

// TestChatOverMixnet runs everything real: a CometBFT chain, relays and
// mailbox nodes over libp2p, bbolt stores. Two users exchange cards and
// talk both ways with acknowledgements, one restarts mid-conversation and
// continues; then a room of three, from which one member is removed and
// cannot read what follows.
func TestChatOverMixnet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	start := time.Now()
	cc := startChatNet(t, ctx)
	t.Logf("network up in %v", time.Since(start).Round(time.Millisecond))
	base := t.TempDir()
	alice := startUser(t, ctx, cc, filepath.Join(base, "alice"), "alice")
	bob := startUser(t, ctx, cc, filepath.Join(base, "bob"), "bob")
	carol := startUser(t, ctx, cc, filepath.Join(base, "carol"), "carol")
	t.Logf("users up in %v", time.Since(start).Round(time.Millisecond))

	// 1:1: bob adds alice's card; the Welcome reaches alice's mailbox.
	dm, err := bob.Manager().AddContact(ctx, alice.card(t))
	if err != nil {
		t.Fatal(err)
	}
	alice.wait(t, 20*time.Second, "welcome", func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventJoined && ev.Room == dm })
	seq := bob.send(t, ctx, dm, "hi alice")
	alice.waitText(t, dm, "hi alice")
	bob.wait(t, 20*time.Second, "ack", func(ev node.ChatEvent) bool { return ev.Kind == node.EventAcked && ev.Room == dm && ev.Seq == seq })
	alice.send(t, ctx, dm, "hi bob")
	bob.waitText(t, dm, "hi bob")
	t.Logf("1:1 both ways in %v", time.Since(start).Round(time.Millisecond))

	// bob restarts; alice writes while he is away and stops at once (her
	// queue keeps the message); both come back, the message is delivered
	// and acknowledged after alice's restart; bob continues.
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	away := alice.send(t, ctx, dm, "while you were away")
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	bob = startUser(t, ctx, cc, bob.dir, "bob")
	alice = startUser(t, ctx, cc, alice.dir, "alice")
	bob.waitText(t, dm, "while you were away")
	alice.wait(t, 20*time.Second, "ack after restart", func(ev node.ChatEvent) bool {
		return ev.Kind == node.EventAcked && ev.Room == dm && ev.Seq == away
	})
	if st := alice.status(t, dm, away); st != node.StatusAcked {
		t.Errorf("status of a message acknowledged after a restart: %s", st)
	}
	bob.send(t, ctx, dm, "back")
	alice.waitText(t, dm, "back")
	hist, err := bob.Manager().History(dm)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, e := range hist {
		texts = append(texts, e.Text)
		if e.Outgoing && e.Text == "hi alice" && bob.Status(dm, e) != node.StatusAcked {
			t.Errorf("status of an acknowledged message after restart: %s", bob.Status(dm, e))
		}
	}
	if !slices.Equal(texts, []string{"hi alice", "hi bob", "while you were away", "back"}) {
		t.Errorf("bob's history after restart: %q", texts)
	}
	t.Logf("restart in %v", time.Since(start).Round(time.Millisecond))

	// A room of three.
	room, err := alice.Manager().CreateRoom("trio")
	if err != nil {
		t.Fatal(err)
	}
	bc, cc2 := bob.card(t), carol.card(t)
	for _, c := range []*e2e.Card{bc, cc2} {
		if err := alice.Manager().ImportContact(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.Manager().Invite(ctx, room, bc.Key, cc2.Key); err != nil {
		t.Fatal(err)
	}
	for _, u := range []*user{bob, carol} {
		u.wait(t, 20*time.Second, "welcome", func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventJoined && ev.Room == room })
	}
	alice.send(t, ctx, room, "hello room")
	bob.waitText(t, room, "hello room")
	carol.waitText(t, room, "hello room")
	carol.send(t, ctx, room, "carol here")
	alice.waitText(t, room, "carol here")
	bob.waitText(t, room, "carol here")
	t.Logf("room of 3 in %v", time.Since(start).Round(time.Millisecond))

	// carol is removed and cannot read what follows.
	if err := alice.Manager().Remove(ctx, room, ed25519.PublicKey(cc2.Key)); err != nil {
		t.Fatal(err)
	}
	carol.wait(t, 20*time.Second, "removal", func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventRemoved && ev.Room == room })
	bob.wait(t, 20*time.Second, "commit", func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventChanged && ev.Room == room })
	alice.send(t, ctx, room, "after carol")
	bob.waitText(t, room, "after carol")
	time.Sleep(time.Second)
	checkRemoved(t, carol.Chat, room, "after carol")
	// Acknowledged messages leave nothing behind in the data dir.
	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	defer fcancel()
	if n := alice.Flush(fctx); n > 0 {
		t.Errorf("alice: %d messages still unacknowledged", n)
	}
	alice.noneQueued(t)
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

// TestChatRoomOfFive checks that a room of five works over the mixnet: the
// Welcome for four joiners at once is larger than one mailbox Put
// (mailbox.MaxPut), so it reaches them only because the queue chunks it;
// every member reads a message sent to the room; a removed member does not
// read the next one while the four others do.
func TestChatRoomOfFive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	start := time.Now()
	cc := startChatNet(t, ctx)
	base := t.TempDir()
	var users []*user
	for _, name := range []string{"ann", "ben", "cat", "dan", "eve"} {
		users = append(users, startUser(t, ctx, cc, filepath.Join(base, name), name))
	}
	t.Logf("network and users up in %v", time.Since(start).Round(time.Millisecond))
	owner, others := users[0], users[1:]
	room, err := owner.Manager().CreateRoom("five")
	if err != nil {
		t.Fatal(err)
	}
	var keys []ed25519.PublicKey
	for _, u := range others {
		c := u.card(t)
		if err := owner.Manager().ImportContact(c); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, c.Key)
	}
	before := owner.QueueStats()
	if err := owner.Manager().Invite(ctx, room, keys...); err != nil {
		t.Fatalf("invite of four: %v", err)
	}
	for _, u := range others {
		u.wait(t, 30*time.Second, "welcome", func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventJoined && ev.Room == room })
	}
	// The invite queued one Welcome per joiner (the commit has nobody to
	// go to); each took more than one chunk: more than one packet.
	after := owner.QueueStats()
	if q := after.Queued - before.Queued; q != 4 {
		t.Errorf("invite queued %d messages, want 4", q)
	}
	if c := after.ChunkItems - before.ChunkItems; c < 8 {
		t.Errorf("four Welcomes went out in %d chunks: not chunked", c)
	}
	t.Logf("room of five in %v (%d packets, %d chunks for the Welcomes)", time.Since(start).Round(time.Millisecond),
		after.Packets-before.Packets, after.ChunkItems-before.ChunkItems)

	seq := owner.send(t, ctx, room, "hello five")
	for _, u := range others {
		u.waitText(t, room, "hello five")
	}
	owner.wait(t, 20*time.Second, "ack from four", func(ev node.ChatEvent) bool {
		return ev.Kind == node.EventAcked && ev.Room == room && ev.Seq == seq
	})
	others[1].send(t, ctx, room, "cat here")
	for _, u := range users {
		if u != others[1] {
			u.waitText(t, room, "cat here")
		}
	}
	t.Logf("everyone read in %v", time.Since(start).Round(time.Millisecond))

	// eve is removed: she learns it, the others apply the commit, and only
	// they read what follows.
	eve, rest := others[3], others[:3]
	if err := owner.Manager().Remove(ctx, room, keys[3]); err != nil {
		t.Fatal(err)
	}
	eve.wait(t, 20*time.Second, "removal", func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventRemoved && ev.Room == room })
	for _, u := range rest {
		u.wait(t, 20*time.Second, "commit", func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventChanged && ev.Room == room })
	}
	seq = owner.send(t, ctx, room, "without eve")
	for _, u := range rest {
		u.waitText(t, room, "without eve")
	}
	owner.wait(t, 20*time.Second, "ack from three", func(ev node.ChatEvent) bool {
		return ev.Kind == node.EventAcked && ev.Room == room && ev.Seq == seq
	})
	info, err := owner.Manager().Room(room)
	if err != nil || len(info.Members) != 4 {
		t.Errorf("room after removal: %d members, %v", len(info.Members), err)
	}
	// Anything eve's mailbox still received has had time to arrive (the
	// owner's ack came after the others decoded it).
	time.Sleep(500 * time.Millisecond)
	checkRemoved(t, eve.Chat, room, "without eve")
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}

// TestChatConfigErrors checks bad configurations fail with errors.
func TestChatConfigErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := node.StartChat(ctx, node.ChatConfig{}); err == nil {
		t.Error("no data dir accepted")
	}
	if _, err := node.StartChat(ctx, node.ChatConfig{DataDir: t.TempDir()}); err == nil {
		t.Error("no chain accepted")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "chat.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := node.StartChat(ctx, node.ChatConfig{DataDir: dir}); err == nil {
		t.Error("damaged chat.json accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "chat.json"), []byte(`{"identity":"zz"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := node.StartChat(ctx, node.ChatConfig{DataDir: dir}); err == nil {
		t.Error("bad identity accepted")
	}
	if _, err := node.ReportedTrustRoot(ctx, []string{"http://127.0.0.1:1"}); err == nil {
		t.Error("unreachable RPC accepted")
	}
}

// BenchmarkChatDeliver measures one message from a user's Send to the
// other user's event (ms-to-receive) and to the sender's acknowledgement
// (ns/op: both), over a real
// loopback network with 5 ms per hop (run with -benchtime 20x: the
// network is started per run).
func BenchmarkChatDeliver(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := testnet.Start(ctx, testnet.Config{
		DataDir: b.TempDir(), MeanDelay: 5 * time.Millisecond, BlockInterval: 200 * time.Millisecond,
		EpochBlocks: 600, LambdaP: 20, LambdaL: 2, LambdaD: 2, LambdaM: 2,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	cc := n.Chain()
	kdf := cheapKDF
	start := func(name string) *node.Chat {
		c, err := node.StartChat(ctx, node.ChatConfig{DataDir: filepath.Join(b.TempDir(), name), Chain: cc, KDF: &kdf, Name: name, MaxBackoff: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	alice, bob := start("alice"), start("bob")
	defer alice.Close()
	defer bob.Close()
	code, err := alice.Card()
	if err != nil {
		b.Fatal(err)
	}
	card, err := e2e.ParseCode(code)
	if err != nil {
		b.Fatal(err)
	}
	room, err := bob.Manager().AddContact(ctx, card)
	if err != nil {
		b.Fatal(err)
	}
	waitFor := func(c *node.Chat, match func(node.ChatEvent) bool) {
		for {
			select {
			case ev := <-c.Events():
				if match(ev) {
					return
				}
			case <-time.After(30 * time.Second):
				b.Fatal("timed out")
			}
		}
	}
	waitFor(alice, func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventJoined })
	var recv time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		text := "message " + time.Now().String()
		seq, err := bob.Send(ctx, room, text)
		if err != nil {
			b.Fatal(err)
		}
		waitFor(alice, func(ev node.ChatEvent) bool { return ev.Kind == e2e.EventMessage && ev.Text == text })
		recv += time.Since(t0)
		waitFor(bob, func(ev node.ChatEvent) bool { return ev.Kind == node.EventAcked && ev.Seq == seq })
	}
	b.ReportMetric(float64(recv.Milliseconds())/float64(b.N), "ms-to-receive")
}

// checkRemoved checks that ch's user knows it was removed from room and
// never read text, sent after the removal.
func checkRemoved(t *testing.T, ch *node.Chat, room e2e.RoomID, text string) {
	t.Helper()
	hist, err := ch.Manager().History(room)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range hist {
		if e.Text == text {
			t.Fatalf("a removed member read %q, sent after its removal", text)
		}
	}
	if info, err := ch.Manager().Room(room); err != nil || !info.Removed {
		t.Errorf("room after removal: %+v, %v", info, err)
	}
}
