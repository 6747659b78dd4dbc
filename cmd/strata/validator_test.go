package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer the test reads while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestValidatorInitStartAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	home := filepath.Join(t.TempDir(), "v")
	out, err := run("validator", "init", "--home", home, "--testnet", "--chain-id", "cmd-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"validator key ", "p2p id ", "chain cmd-test, 1 validators, epochs of 60 blocks, 3 layers, k = 8"} {
		if !strings.Contains(out, want) {
			t.Fatalf("init output %q lacks %q", out, want)
		}
	}
	if _, err := run("validator", "init", "--home", home); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second init: %v", err)
	}
	show, err := run("validator", "show", "--home", home)
	if err != nil || !strings.Contains(out, strings.SplitN(show, "\n", 2)[0]) {
		t.Fatalf("show %q (%v) disagrees with init %q", show, err, out)
	}
	for range 2 {
		startUntilTrustRoot(t, home)
	}
}

// startUntilTrustRoot runs "validator start" until it prints the trust
// root, then interrupts it and checks it stops cleanly.
func startUntilTrustRoot(t *testing.T, home string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCmd()
	var out, logs syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&logs)
	cmd.SetArgs([]string{"validator", "start", "--home", home, "--p2p", "tcp://127.0.0.1:0", "--rpc", "tcp://127.0.0.1:0", "--block-interval", "100ms", "--log-level", "error"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "trust root: height ") {
		if time.Now().After(deadline) {
			t.Fatalf("no trust root after 20s; output %q, logs %q", out.String(), logs.String())
		}
		select {
		case err := <-done:
			t.Fatalf("validator stopped: %v; logs %q", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("validator exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("validator did not stop")
	}
}

func TestValidatorRefusesBadInput(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{"validator", "init", "--home", home, "--validator", "zz"},
		{"validator", "init", "--home", t.TempDir(), "--epoch-blocks", "1"},
		{"validator", "show", "--home", t.TempDir()},
		{"validator", "start", "--home", t.TempDir(), "--log-level", "loud"},
		{"validator", "start", "--home", t.TempDir()},
	} {
		if _, err := run(args...); err == nil {
			t.Errorf("strata %v succeeded", args)
		}
	}
}
