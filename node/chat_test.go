package node_test

import (
	"context"
	"crypto/ed25519"
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
// (trust on first use of its RPC).
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
	cc, err := node.ChainFromRPC(ctx, n.RPC())
	if err != nil {
		t.Fatal(err)
	}
	return cc
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

	// bob restarts; alice writes while he is away; he continues.
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	alice.send(t, ctx, dm, "while you were away")
	bob = startUser(t, ctx, cc, bob.dir, "bob")
	bob.waitText(t, dm, "while you were away")
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
	ch, err := carol.Manager().History(room)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ch {
		if e.Text == "after carol" {
			t.Fatal("a removed member read a later message")
		}
	}
	if info, err := carol.Manager().Room(room); err != nil || !info.Removed {
		t.Errorf("carol's room after removal: %+v, %v", info, err)
	}
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
	if _, err := node.ChainFromRPC(ctx, "http://127.0.0.1:1"); err == nil {
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
	cc, err := node.ChainFromRPC(ctx, n.RPC())
	if err != nil {
		b.Fatal(err)
	}
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
