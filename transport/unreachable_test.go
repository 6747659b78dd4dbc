package transport

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A peer that dies has its queue discarded and counted, sends to it fail at
// once instead of piling up stale packets, other peers are unaffected, and
// once it is back on the same address and key packets flow to it again
// within a few seconds.
func TestUnreachablePeer(t *testing.T) {
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	deadCol := newCollector(1 << 12)
	dead := startHost(t, Config{Identity: key, Handler: deadCol.handle, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}})
	deadInfo := dead.PeerInfo()
	const honestN = 300
	col := newCollector(honestN)
	healthy := startHost(t, Config{Handler: col.handle})
	sender := startHost(t, Config{SendQueue: 64, Logger: testLogger(t)})
	for _, info := range []PeerInfo{deadInfo, onlyAddrs(healthy.PeerInfo(), "/tcp/")} {
		if err := sender.AddPeer(info); err != nil {
			t.Fatal(err)
		}
	}
	if err := sender.TrySend(dead.ID(), seqPacket(0, testPacketSize)); err != nil {
		t.Fatal(err)
	}
	deadCol.next(t, 10*time.Second)
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}

	// Packets sent while the death is being noticed are queued, then
	// dropped and counted; after that sends fail fast.
	queued := 0
	eventually(t, 15*time.Second, "sends to the dead peer to fail with ErrUnreachable", func() bool {
		err := sender.TrySend(dead.ID(), seqPacket(1, testPacketSize))
		if err == nil {
			queued++
		}
		return errors.Is(err, ErrUnreachable)
	})
	p := sender.peers[dead.ID()]
	eventually(t, 5*time.Second, "the dead peer's queue to be discarded", func() bool { return len(p.queue) == 0 })
	if dropped := testutil.ToFloat64(sender.m.dropped.WithLabelValues(dropUnreachable)); dropped < 1 || dropped > float64(queued) {
		t.Errorf("dropped{unreachable} = %v after %d packets queued for the dead peer", dropped, queued)
	}

	// Interleaved with honest traffic: every send to the dead peer returns
	// at once, Send included, and the healthy peer gets every packet.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	refusedBefore := testutil.ToFloat64(sender.m.unreachable)
	start := time.Now()
	refused := 0
	for i := range honestN {
		if err := sender.Send(ctx, healthy.ID(), seqPacket(uint64(i), testPacketSize)); err != nil {
			t.Fatalf("send to the healthy peer: %v", err)
		}
		for _, send := range []func() error{
			func() error { return sender.TrySend(dead.ID(), seqPacket(2, testPacketSize)) },
			func() error { return sender.TrySendVia(dead.ID(), NodeID{1}, seqPacket(2, testPacketSize)) },
			func() error { return sender.Send(context.Background(), dead.ID(), seqPacket(2, testPacketSize)) },
		} {
			if err := send(); errors.Is(err, ErrUnreachable) {
				refused++
			} else if err != nil {
				t.Fatalf("send to the dead peer: %v", err)
			}
		}
	}
	// The only ones let through are the redials' probes, one per backoff.
	if refused < 3*honestN-20 {
		t.Errorf("only %d of %d sends to the dead peer failed fast", refused, 3*honestN)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("sends took %v: something waited on the dead peer", d)
	}
	if got := testutil.ToFloat64(sender.m.unreachable) - refusedBefore; got != float64(refused) {
		t.Errorf("send_unreachable_total grew by %v, %d sends were refused", got, refused)
	}
	for i := range honestN {
		if r := col.next(t, 10*time.Second); !bytes.Equal(r.pkt, seqPacket(uint64(i), testPacketSize)) {
			t.Fatalf("healthy peer's packet %d corrupted or out of order", i)
		}
	}

	// The dead peer comes back on the same address and key; the pool uses
	// it again once its backoff expires.
	var listen []string
	for _, a := range deadInfo.Addrs {
		listen = append(listen, a[:strings.LastIndex(a, "/p2p/")])
	}
	back := newCollector(1 << 12)
	startHost(t, Config{Identity: key, ListenAddrs: listen, Handler: back.handle})
	restarted := time.Now()
	for seq := uint64(1000); ; seq++ {
		err := sender.TrySend(dead.ID(), seqPacket(seq, testPacketSize))
		if err != nil && !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrQueueFull) {
			t.Fatal(err)
		}
		select {
		case <-back.ch:
			t.Logf("restarted peer reached after %v", time.Since(restarted))
			if err := sender.TrySend(dead.ID(), seqPacket(seq+1, testPacketSize)); err != nil {
				t.Fatalf("send after the peer came back: %v", err)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Since(restarted) > 15*time.Second {
			t.Fatal("no packet reached the restarted peer within 15s")
		}
	}
}

func TestUnreachableGate(t *testing.T) {
	var p peerState
	now := time.Now()
	if ok, probe := p.admit(now); !ok || probe {
		t.Fatal("a reachable peer refused a send")
	}
	p.setUnreachable(now.Add(time.Second))
	if ok, _ := p.admit(now); ok || !p.refusing(now) {
		t.Fatal("an unreachable peer took a send before its backoff expired")
	}
	later := now.Add(2 * time.Second)
	if ok, probe := p.admit(later); !ok || !probe {
		t.Fatal("no probe once the backoff expired")
	}
	if ok, _ := p.admit(later); ok {
		t.Fatal("a second send went through while the probe is being tried")
	}
	if p.refusing(later) {
		t.Fatal("the sender would drop the probe")
	}
	p.unprobe(true)
	if ok, probe := p.admit(later); !ok || !probe {
		t.Fatal("a probe that was not queued did not free the next send")
	}
	p.setReachable()
	if ok, probe := p.admit(later); !ok || probe {
		t.Fatal("a reachable peer again refused a send")
	}
}
