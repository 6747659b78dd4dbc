package node

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// startChainRelays starts an embedded validator and n relays in chain mode
// and waits until the verified topology lists all of them.
func startChainRelays(t *testing.T, ctx context.Context, p pki.Params, n int) (ChainConfig, *pki.TopologyCache) {
	t.Helper()
	_, cc := startTestChain(t, p)
	dir := t.TempDir()
	done := make(chan error, n)
	for i := range n {
		rd := filepath.Join(dir, fmt.Sprintf("relay%d", i))
		key, err := transport.GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		if err := transport.SaveIdentity(rd+".key", key); err != nil {
			t.Fatal(err)
		}
		chain := cc
		cfg := &RelayConfig{Identity: rd + ".key", DataDir: rd, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			Chain: &chain, ChainInterval: "200ms", EpochLength: "10s", MaxRate: 1000}
		go func() { done <- RunRelay(ctx, cfg, testLog(t)) }()
	}
	t.Cleanup(func() {
		for range n {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	})
	cache, _, err := FollowChain(ctx, cc, "", 200*time.Millisecond, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		if top := cache.Current(); top != nil && len(top.Relays) == n {
			return cc, cache
		}
		if time.Now().After(deadline) {
			t.Fatalf("the topology never listed %d relays", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newTestClient(t *testing.T, ctx context.Context, cache *pki.TopologyCache, home int, rates client.Rates) *client.Client {
	t.Helper()
	key, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	top := cache.Current()
	c, err := client.New(ctx, client.Config{
		Identity: key, DataDir: t.TempDir(), Home: PeerOf(top.Relays[home].NodeInfo),
		Topology: cache.Current, Rates: &rates, Logger: testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClientsLoopAndReplyThroughTheStrata runs two clients against three
// relays admitted by an embedded validator: each client's loops go round
// the strata and come back through its home, and a reply sent through a
// SURB of client A by client B arrives at A, decrypted.
func TestClientsLoopAndReplyThroughTheStrata(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := chainParams()
	p.EpochBlocks, p.TopologyLead = 200, 50 // no epoch change during the test
	// The clients' rates: a home limits its clients' entry frames to 4× the
	// network's λs, and a new client starts with only a few packets in hand.
	p.LambdaP, p.LambdaL, p.LambdaD = 20, 10, 5
	_, cache := startChainRelays(t, ctx, p, 3)
	rates := client.Rates{Payload: 20, Loop: 10, Drop: 5}
	a := newTestClient(t, ctx, cache, 0, rates)
	b := newTestClient(t, ctx, cache, 2, rates)

	// The clients see the topology as soon as the chain lists the relays;
	// a relay that has not read it yet drops what it cannot route (the
	// first loops are lost that way). Start once a loop of each came back.
	warm := time.Now().Add(20 * time.Second)
	for a.Stats().LoopsReturned == 0 || b.Stats().LoopsReturned == 0 {
		if time.Now().After(warm) {
			t.Fatalf("no loop came back: A %+v, B %+v", a.Stats(), b.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Replies through three SURBs: the network is real and may lose a
	// packet; a broken reply path loses all three.
	type sent struct {
		id   sphinx.SURBID
		dest client.Destination
		msg  []byte
	}
	var replies []sent
	for i := range 3 {
		surb, err := a.NewSURB(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dest, err := b.ViaSURB(surb.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, sent{surb.ID, dest, fmt.Appendf(nil, "reply %d through three mixes", i)})
	}
	sendCtx, cancelSend := context.WithTimeout(ctx, 10*time.Second)
	defer cancelSend()
	for _, r := range replies {
		if _, err := b.Send(sendCtx, r.dest, r.msg); err != nil {
			t.Fatal(err)
		}
	}
	var got *sent
	wait := time.After(20 * time.Second)
	for n := 0; n < len(replies); n++ {
		select {
		case r := <-a.Receive():
			i := slices.IndexFunc(replies, func(s sent) bool { return s.id == r.SURB })
			if i < 0 || !bytes.Equal(r.Payload, replies[i].msg) {
				t.Fatalf("reply %x %q matches no SURB sent", r.SURB, r.Payload)
			}
			got = &replies[i]
		case <-wait:
			n = len(replies)
		}
	}
	if got == nil {
		t.Fatalf("no reply of %d; A %+v, B %+v", len(replies), a.Stats(), b.Stats())
	}
	// A second reply through the same SURB is a replay: the first hop
	// drops it, and were it delivered A would not know its id any more.
	dest := got.dest
	msg := got.msg
	if _, err := b.Send(sendCtx, dest, msg); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		sa, sb := a.Stats(), b.Stats()
		if sa.LoopsReturned >= 5 && sb.LoopsReturned >= 5 {
			t.Logf("A %+v", sa)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("loops: A %+v, B %+v", sa, sb)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		select {
		case r := <-a.Receive():
			if r.SURB == got.id {
				t.Fatalf("a replayed SURB delivered %q", r.Payload)
			}
			t.Logf("a late reply %q", r.Payload) // one of the first three
			continue
		default:
		}
		break
	}
	if s := a.Stats(); s.Cover == 0 || s.Loops == 0 {
		t.Errorf("A sent no cover: %+v", s)
	}
}
