package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/mailbox"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

func startMailboxNode(t *testing.T, ctx context.Context, cc ChainConfig, dir string) (*MailboxConfig, chan error) {
	t.Helper()
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := transport.SaveIdentity(filepath.Join(dir, "id.key"), key); err != nil {
		t.Fatal(err)
	}
	chain := cc
	cfg := &MailboxConfig{Identity: filepath.Join(dir, "id.key"), DataDir: dir, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
		Chain: &chain, ChainInterval: "200ms", EpochLength: "10s", MaxRate: 1000}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- RunMailbox(ctx, cfg, testLog(t)) }()
	return cfg, done
}

// TestMailboxStoresAndPushesThroughSURBs: client A creates a mailbox on a
// mailbox node registered in the PKI and stocks it with SURBs; client B
// puts a message into it through the strata and gets the node's
// acknowledgement through its own SURB; the node pushes the message to A
// through one of A's SURBs.
func TestMailboxStoresAndPushesThroughSURBs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := chainParams()
	p.EpochBlocks, p.TopologyLead = 200, 50
	// The clients' rates: a home limits its clients' entry frames to 4× the
	// network's λs, and a new client starts with only a few packets in hand.
	p.LambdaP, p.LambdaL, p.LambdaD = 20, 2, 2
	cc, cache := startChainRelays(t, ctx, p, 3)
	_, done := startMailboxNode(t, ctx, cc, t.TempDir())
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	var node sphinx.NodeID
	deadline := time.Now().Add(30 * time.Second)
	for {
		if top := cache.Current(); top != nil && len(top.Mailboxes) == 1 {
			node = top.Mailboxes[0].ID
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mailbox node never appeared in the topology")
		}
		time.Sleep(100 * time.Millisecond)
	}
	rates := client.Rates{Payload: 20, Loop: 2, Drop: 2}
	a := newTestClient(t, ctx, cache, 0, rates)
	b := newTestClient(t, ctx, cache, 1, rates)
	codec := mailbox.CodecFor(sphinx.DefaultGeometry())

	_, key, _ := ed25519.GenerateKey(rand.Reader)
	id := mailbox.Ed25519ID(1, key.Public().(ed25519.PublicKey))
	owner := mailbox.NewOwner(mailbox.OwnerConfig{Mix: a, Codec: codec, Node: node, ID: id, Type: 1, Key: key,
		Epoch: func() uint64 { return cache.Current().Epoch }})
	go func() {
		for r := range a.Receive() {
			owner.Handle(ctx, r.Payload)
		}
	}()
	if err := owner.Create(ctx); err != nil {
		t.Fatal(err)
	}
	go owner.Run(ctx)

	msg := []byte("stored and forwarded")
	var ackID sphinx.SURBID
	var stored mailbox.MessageID
	// The put may race the create through different routes; retry until
	// the node has the mailbox.
	for attempt := 0; ; attempt++ {
		var err error
		if ackID, err = mailbox.Put(ctx, b, codec, node, id, 1, msg); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-b.Receive():
			if r.SURB != ackID {
				t.Fatalf("answer to SURB %x, want %x", r.SURB, ackID)
			}
			stored, err = mailbox.DecodeAnswer(codec, r.Payload)
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to the put; B %+v", b.Stats())
		}
		if err == nil {
			break
		}
		if attempt == 5 {
			t.Fatalf("put refused: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if stored != mailbox.MessageIDOf(msg) {
		t.Errorf("stored id %x, want %x", stored, mailbox.MessageIDOf(msg))
	}
	select {
	case m := <-owner.Messages():
		if !bytes.Equal(m.Data, msg) {
			t.Fatalf("pushed %q, want %q", m.Data, msg)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no push; A %+v", a.Stats())
	}
}
