package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"

	"github.com/strata-mix/strata/testnet"
)

func TestClientRefusesBadInput(t *testing.T) {
	empty := t.TempDir()
	pass := filepath.Join(t.TempDir(), "missing")
	for _, args := range [][]string{
		{"client", "extra"},
		{"client", "init", "--data-dir", empty, "--name", "a"},
		{"client", "init", "--data-dir", empty, "--name", "a", "--chain", "ftp://x"},
		{"client", "init", "--data-dir", empty, "--chain", "http://127.0.0.1:1"},
		{"client", "init", "--data-dir", empty, "--name", "a", "--chain", "http://127.0.0.1:1", "--home", "zz"},
		{"client", "init", "--data-dir", empty, "--name", "a", "--chain", "http://127.0.0.1:1", "--timeout", "2s"},
		{"client", "init", "--data-dir", empty, "--name", "a", "--chain", "http://127.0.0.1:1", "--log-level", "loud"},
		{"client", "init", "--data-dir", empty, "--name", "a", "--chain", "http://127.0.0.1:1", "--trust-first-use", "--timeout", "2s"},
		{"client", "init", "--data-dir", empty, "--name", "a", "--chain", "http://127.0.0.1:1", "--trust-hash", "zz"},
		{"client", "init", "--data-dir", empty, "--name", "a", "--chain", "http://127.0.0.1:1", "--trust-hash", strings.Repeat("ab", 32), "--trust-first-use"},
		{"client", "chain", "--data-dir", empty},
		{"client", "chain", "--data-dir", empty, "--add", "http://127.0.0.1:1"},
		{"client", "card", "--data-dir", empty},
		{"client", "card", "--data-dir", empty, "--passphrase-file", pass},
		{"client", "rooms", "--data-dir", empty},
		{"client", "read", "--data-dir", empty},
		{"client", "read", "--data-dir", empty, "--wait", "-1s"},
		{"client", "send", "--data-dir", empty, "alice"},
		{"client", "send", "--data-dir", empty, "alice", "  "},
		{"client", "send", "--data-dir", empty, "alice", "hi"},
		{"client", "contact", "add", "--data-dir", empty},
		{"client", "contact", "add", "--data-dir", empty, "strata1notacode"},
		{"client", "contact", "add", "--data-dir", empty, "\x00\xff"},
		{"client", "history", "--data-dir", empty},
		{"client", "room", "invite", "--data-dir", empty, "r"},
		{"client", "room", "create", "--data-dir", empty, " "},
		{"chat", "--data-dir", empty},
		{"chat", "extra"},
	} {
		if out, err := run(args...); err == nil {
			t.Errorf("strata %q succeeded: %s", args, out)
		}
	}
	if _, err := os.Stat(filepath.Join(empty, "chat.json")); err == nil {
		t.Error("a failed init left a user behind")
	}
}

// runIn runs strata with stdin.
func runIn(in string, args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(in))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestClientScriptedRun drives two users through the CLI against a real
// testnet: init, contact add, send both ways with acknowledgements, read,
// rooms, history, and a chat session fed from a script.
func TestClientScriptedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	n, err := testnet.Start(ctx, testnet.Config{
		DataDir: t.TempDir(), MeanDelay: 5 * time.Millisecond, BlockInterval: 200 * time.Millisecond,
		EpochBlocks: 600, LambdaP: 20, LambdaL: 2, LambdaD: 2, LambdaM: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	base := t.TempDir()
	passFile := filepath.Join(base, "pass")
	if err := os.WriteFile(passFile, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{"alice": filepath.Join(base, "alice"), "bob": filepath.Join(base, "bob")}
	strata := func(who string, args ...string) string {
		t.Helper()
		full := append(append([]string{"client"}, args[0]), append([]string{"--data-dir", dirs[who], "--passphrase-file", passFile}, args[1:]...)...)
		if args[0] == "contact" {
			full = append([]string{"client", "contact", args[1], "--data-dir", dirs[who], "--passphrase-file", passFile}, args[2:]...)
		}
		out, err := run(full...)
		if err != nil {
			t.Fatalf("%s: strata %q: %v\n%s", who, full, err, out)
		}
		return out
	}
	// background runs a command while the test goes on; its output comes
	// on the channel.
	background := func(who string, args ...string) <-chan string {
		t.Helper()
		c := make(chan string, 1)
		go func() {
			full := append(append([]string{"client"}, args[0]), append([]string{"--data-dir", dirs[who], "--passphrase-file", passFile}, args[1:]...)...)
			out, err := run(full...)
			if err != nil {
				out += "\nerror: " + err.Error()
			}
			c <- out
		}()
		return c
	}
	// Without a trust root init refuses, and prints the block it would
	// trust: the chain's latest block as the endpoint reports it.
	out, err := run("client", "init", "--data-dir", dirs["bob"], "--passphrase-file", passFile, "--chain", n.RPC(), "--name", "bob")
	if err == nil || !strings.Contains(err.Error(), "--trust-first-use") {
		t.Fatalf("init without --trust-hash: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dirs["bob"], "chat.json")); err == nil {
		t.Fatal("a refused init left a user behind")
	}
	var height int64
	var hash string
	for _, l := range strings.Split(out, "\n") {
		if _, err := fmt.Sscanf(l, n.RPC()+" reports its latest block as height %d hash %s", &height, &hash); err == nil {
			break
		}
	}
	if height < 1 || len(hash) != 64 || !strings.Contains(out, "--trust-height "+strconv.FormatInt(height, 10)+" --trust-hash "+hash) {
		t.Fatalf("init without --trust-hash printed no block to trust:\n%s", out)
	}
	if want := blockHash(t, n.RPC(), height); want != hash {
		t.Fatalf("init printed hash %s for block %d, the chain has %s", hash, height, want)
	}
	// alice gets the testnet's trust root; bob trusts on first use.
	cc := n.Chain()
	initArgs := map[string][]string{
		"alice": {"--trust-height", strconv.FormatInt(cc.TrustHeight, 10), "--trust-hash", cc.TrustHash},
		"bob":   {"--trust-first-use"},
	}
	codes := map[string]string{}
	for who := range dirs {
		out := strata(who, append([]string{"init", "--chain", n.RPC(), "--name", who}, initArgs[who]...)...)
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "strata1") {
				codes[who] = l
			}
		}
		if codes[who] == "" {
			t.Fatalf("init printed no code: %s", out)
		}
	}
	if _, err := run("client", "init", "--data-dir", dirs["alice"], "--chain", n.RPC(), "--name", "again", "--trust-first-use"); err == nil {
		t.Error("init over an existing user succeeded")
	}
	if _, err := run("client", "rooms", "--data-dir", dirs["alice"], "--passphrase-file", filepath.Join(base, "nope")); err == nil {
		t.Error("a missing passphrase file was accepted")
	}
	wrong := filepath.Join(base, "wrong")
	if err := os.WriteFile(wrong, []byte("wrong horse"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run("client", "rooms", "--data-dir", dirs["alice"], "--passphrase-file", wrong); err == nil {
		t.Error("a wrong passphrase was accepted")
	}
	if out := strata("alice", "card"); !strings.HasPrefix(out, "strata1") {
		t.Errorf("card: %s", out)
	}
	if out := strata("bob", "contact", "add", codes["alice"], "--wait", "1s"); !strings.Contains(out, "contact alice added") {
		t.Errorf("contact add: %s", out)
	}
	// Acknowledgements come from the recipient's queue: they arrive while
	// the recipient runs (here a read alongside the send, long enough that
	// the sender's start-up under a loaded CI does not outlast it: 4 s did
	// once, 8 s did with the whole suite and three more test runs on two
	// cores).
	reading := background("alice", "read", "--wait", "15s")
	if out := strata("bob", "send", "alice", "hello from bob", "--wait", "20s"); !strings.Contains(out, "acked") {
		t.Errorf("send: %s", out)
	}
	if out := <-reading; !strings.Contains(out, "bob: hello from bob") {
		t.Errorf("alice read: %s", out)
	}
	reading = background("bob", "read", "--wait", "15s")
	if out := strata("alice", "send", "bob", "hello from alice", "--wait", "20s"); !strings.Contains(out, "acked") {
		t.Errorf("send: %s", out)
	}
	if out := <-reading; !strings.Contains(out, "alice: hello from alice") || !strings.Contains(out, "hello from bob (acked)") {
		t.Errorf("bob read: %s", out)
	}
	if out := strata("bob", "read", "--wait", "0s"); strings.Contains(out, "hello") {
		t.Errorf("read printed old messages again: %s", out)
	}
	if out := strata("alice", "rooms"); !strings.Contains(out, "alice, bob") && !strings.Contains(out, "bob, alice") {
		t.Errorf("rooms: %s", out)
	}
	if out := strata("alice", "history", "bob"); !strings.Contains(out, "hello from bob") || !strings.Contains(out, "hello from alice (acked)") {
		t.Errorf("history: %s", out)
	}
	// A room: alice invites bob by his code.
	bobCode := strings.TrimSpace(strata("bob", "card"))
	strata("alice", "room", "create", "team")
	if out := strata("alice", "room", "invite", "team", bobCode, "--wait", "1s"); !strings.Contains(out, "team") || (!strings.Contains(out, "alice, bob") && !strings.Contains(out, "bob, alice")) {
		t.Errorf("room invite: %s", out)
	}
	// The Welcome waits in bob's mailbox; he joins when he reads.
	reading = background("bob", "read", "--wait", "15s")
	if out := strata("alice", "send", "team", "hi team", "--wait", "20s"); !strings.Contains(out, "acked") {
		t.Errorf("send to room: %s", out)
	}
	if out := <-reading; !strings.Contains(out, "joined room") || !strings.Contains(out, "alice: hi team") {
		t.Errorf("bob read room: %s", out)
	}
	// bob's side names the joined room after alice (MLS carries no room
	// name): "alice" is now ambiguous and must be refused.
	if out, err := run("client", "send", "alice", "which?", "--data-dir", dirs["bob"], "--passphrase-file", passFile); err == nil || !strings.Contains(err.Error(), "room id") {
		t.Errorf("ambiguous send: %v %s", err, out)
	}
	if _, err := run("client", "room", "invite", "team", "nobody", "--data-dir", dirs["alice"], "--passphrase-file", passFile); err == nil {
		t.Error("invite of an unknown contact succeeded")
	}
	out, err = runIn("/help\n/contacts\n/room bob\nvia chat\n/nonsense\n/history\n", "chat", "--data-dir", dirs["alice"], "--passphrase-file", passFile)
	if err != nil {
		t.Fatalf("chat: %v\n%s", err, out)
	}
	for _, want := range []string{"/invite", "current room", "sent", "unknown command", "via chat"} {
		if !strings.Contains(out, want) {
			t.Errorf("chat output lacks %q:\n%s", want, out)
		}
	}
	if out := strata("bob", "read", "--wait", "3s"); !strings.Contains(out, "alice: via chat") {
		t.Errorf("bob read after chat: %s", out)
	}

	// alice's endpoints change: a dead one only, and she cannot start;
	// the testnet's added after it, and she reads and sends through it
	// (failing over from the dead one), her trust root and store kept.
	dead := "http://127.0.0.1:1"
	if out := strata("alice", "chain"); !strings.Contains(out, "endpoint 1\t"+n.RPC()) || !strings.Contains(out, cc.TrustHash) {
		t.Errorf("chain: %s", out)
	}
	if out := strata("alice", "chain", "--set", dead); !strings.Contains(out, "endpoint 1\t"+dead) || strings.Contains(out, n.RPC()) {
		t.Errorf("chain --set: %s", out)
	}
	if out, err := run("client", "read", "--data-dir", dirs["alice"], "--passphrase-file", passFile, "--wait", "0s", "--timeout", "5s"); err == nil {
		t.Errorf("read through a dead endpoint only succeeded: %s", out)
	}
	out = strata("alice", "chain", "--add", n.RPC())
	if !strings.Contains(out, "endpoint 1\t"+dead) || !strings.Contains(out, "endpoint 2\t"+n.RPC()) || !strings.Contains(out, "height "+strconv.FormatInt(cc.TrustHeight, 10)+" hash "+cc.TrustHash) {
		t.Errorf("chain --add: %s", out)
	}
	reading = background("bob", "read", "--wait", "15s")
	if out := strata("alice", "send", "bob", "after the endpoint change", "--wait", "20s"); !strings.Contains(out, "acked") {
		t.Errorf("send after chain --add: %s", out)
	}
	if out := <-reading; !strings.Contains(out, "alice: after the endpoint change") {
		t.Errorf("bob read after alice's endpoint change: %s", out)
	}
	if _, err := run("client", "chain", "--data-dir", dirs["alice"], "--remove", "http://127.0.0.1:2"); err == nil {
		t.Error("chain --remove of an unknown endpoint succeeded")
	}
	if _, err := run("client", "chain", "--data-dir", dirs["alice"], "--set", "ftp://x"); err == nil {
		t.Error("chain --set ftp://x succeeded")
	}
	if out := strata("alice", "chain", "--remove", dead); strings.Contains(out, dead) || !strings.Contains(out, "endpoint 1\t"+n.RPC()) {
		t.Errorf("chain --remove: %s", out)
	}
	// A new root of trust: both halves or nothing; then the block init
	// printed, and alice still starts.
	if _, err := run("client", "chain", "--data-dir", dirs["alice"], "--trust-height", "3"); err == nil {
		t.Error("chain --trust-height without --trust-hash succeeded")
	}
	if out := strata("alice", "chain", "--trust-height", strconv.FormatInt(height, 10), "--trust-hash", hash); !strings.Contains(out, "height "+strconv.FormatInt(height, 10)+" hash "+hash) {
		t.Errorf("chain --trust-height --trust-hash: %s", out)
	}
	strata("alice", "read", "--wait", "0s")
}

// blockHash returns the hash of block height as rpc reports it.
func blockHash(t *testing.T, rpc string, height int64) string {
	t.Helper()
	c, err := rpchttp.New(rpc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Block(context.Background(), &height)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b.BlockID.Hash)
}
