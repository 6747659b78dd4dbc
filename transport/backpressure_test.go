package transport

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStuckPeerDoesNotBlockOthers(t *testing.T) {
	release := make(chan struct{})
	var stuckGot atomic.Int64
	stuck := startHost(t, Config{Handler: func(NodeID, []byte) {
		stuckGot.Add(1)
		<-release
	}})
	t.Cleanup(func() { close(release) }) // runs before stuck.Close
	const n = 2000
	col := newCollector(n)
	healthy := startHost(t, Config{Handler: col.handle})
	sender := startHost(t, Config{SendQueue: 16, WriteTimeout: 2 * time.Second})
	for _, h := range []*Host{stuck, healthy} {
		if err := sender.AddPeer(onlyAddrs(h.PeerInfo(), "/tcp/")); err != nil {
			t.Fatal(err)
		}
	}

	// Connect first: while the dial is in progress the queue is full for
	// a moment without the pipe being full (once that made the test pass
	// its fill loop too early). The first packet reaches the handler,
	// which then holds the reader.
	pkt := seqPacket(0, testPacketSize)
	if err := sender.Send(context.Background(), stuck.ID(), pkt); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "first packet at the stuck peer", func() bool { return stuckGot.Load() == 1 })

	// Fill the stuck peer's pipe (its reader buffer, yamux window and
	// socket buffers) and then its queue, until the queue stays full.
	stayedFull := false
	for round := 0; round < 1000 && !stayedFull; round++ {
		for {
			err := sender.TrySend(stuck.ID(), pkt)
			if errors.Is(err, ErrQueueFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
		stayedFull = errors.Is(sender.TrySend(stuck.ID(), pkt), ErrQueueFull)
	}
	if !stayedFull {
		t.Fatal("the stuck peer's queue never stayed full")
	}
	if testutil.ToFloat64(sender.m.queueFull) == 0 {
		t.Error("queue-full metric not counted")
	}

	// Send waits for room and gives up at its deadline. The kernel may
	// still grow a socket buffer and take a packet or two: retry until
	// the pipe is truly full.
	var err error
	for try := 0; try < 50 && err == nil; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err = sender.Send(ctx, stuck.ID(), seqPacket(0, testPacketSize))
		cancel()
	}
	if !errors.Is(err, ErrQueueFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a stuck peer = %v, want ErrQueueFull and DeadlineExceeded", err)
	}

	// The healthy peer gets everything, in order, while the other is stuck.
	start := time.Now()
	for i := range uint64(n) {
		if err := sender.Send(context.Background(), healthy.ID(), seqPacket(i, testPacketSize)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range uint64(n) {
		if r := col.next(t, 10*time.Second); !bytes.Equal(r.pkt, seqPacket(i, testPacketSize)) {
			t.Fatalf("healthy peer: packet %d wrong", i)
		}
	}
	t.Logf("healthy peer got %d packets in %v while the stuck one holds %d", n, time.Since(start), stuckGot.Load())

	// A peer that reads nothing for WriteTimeout has its stream reset.
	eventually(t, 10*time.Second, "write timeout", func() bool {
		return testutil.ToFloat64(sender.m.writeTimeouts) >= 1
	})
}

func TestRelayPushesToClientOverTheClientsConnection(t *testing.T) {
	relayCol := newCollector(4)
	relay := startHost(t, Config{Handler: relayCol.handle})
	clientCol := newCollector(4)
	client := startHost(t, Config{NoListen: true, Handler: clientCol.handle})
	if len(client.Addrs()) != 0 {
		t.Fatalf("NoListen client has addresses %v", client.Addrs())
	}
	if err := client.AddPeer(relay.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Connect(ctx, relay.ID()); err != nil {
		t.Fatal(err)
	}
	up := seqPacket(1, testPacketSize)
	if err := client.TrySend(relay.ID(), up); err != nil {
		t.Fatal(err)
	}
	r := relayCol.next(t, 10*time.Second)
	if r.from != client.ID() || !bytes.Equal(r.pkt, up) {
		t.Fatal("relay got a wrong packet from the client")
	}

	// The relay knows no address for the client, only its connection.
	down := seqPacket(2, testPacketSize)
	if err := relay.TrySend(client.ID(), down); err != nil {
		t.Fatalf("relay push to connected client: %v", err)
	}
	if r := clientCol.next(t, 10*time.Second); r.from != relay.ID() || !bytes.Equal(r.pkt, down) {
		t.Fatal("client got a wrong packet from the relay")
	}
	if conns := relay.Conns(client.ID()); len(conns) != 1 || conns[0].Outbound {
		t.Fatalf("relay should reuse the single inbound connection, has %+v", conns)
	}

	// Once the client leaves, the relay cannot reach it and says so.
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "client forgotten", func() bool {
		return errors.Is(relay.TrySend(client.ID(), down), ErrUnknownPeer)
	})
}
