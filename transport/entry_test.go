package transport

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// entryCollector keeps copies of the entry frames a host receives, in one
// channel with the packets so that their order shows.
type entryCollector struct {
	ch chan entryReceived
}

type entryReceived struct {
	entry      bool
	from, next NodeID
	pkt        []byte
}

func newEntryCollector(n int) *entryCollector {
	return &entryCollector{ch: make(chan entryReceived, n)}
}

func (c *entryCollector) handle(from NodeID, pkt []byte) {
	c.ch <- entryReceived{from: from, pkt: append([]byte(nil), pkt...)}
}

func (c *entryCollector) entry(from, next NodeID, pkt []byte) {
	c.ch <- entryReceived{entry: true, from: from, next: next, pkt: append([]byte(nil), pkt...)}
}

func TestEntryFramesReachTheEntryHandler(t *testing.T) {
	for _, tr := range []string{"/tcp/", "/quic-v1"} {
		t.Run(tr, func(t *testing.T) {
			const n = 200
			col := newEntryCollector(n)
			home := startHost(t, Config{Handler: col.handle, Entry: col.entry})
			client := startHost(t, Config{NoListen: true})
			if err := client.AddPeer(onlyAddrs(home.PeerInfo(), tr)); err != nil {
				t.Fatal(err)
			}
			// Packets and entry frames interleaved on one queue arrive in
			// order, each at its own handler, with the next hop intact.
			var next NodeID
			for i := range n {
				next[0], next[31] = byte(i), byte(i*7)
				pkt := seqPacket(uint64(i), testPacketSize)
				var err error
				if i%3 == 0 {
					err = client.TrySend(home.ID(), pkt)
				} else {
					err = client.TrySendVia(home.ID(), next, pkt)
				}
				if err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
				if i == 0 {
					// Let the dial finish before the queue fills.
					<-col.ch
				}
			}
			for i := 1; i < n; i++ {
				var r entryReceived
				select {
				case r = <-col.ch:
				case <-time.After(10 * time.Second):
					t.Fatalf("frame %d did not arrive", i)
				}
				wantEntry := i%3 != 0
				next[0], next[31] = byte(i), byte(i*7)
				switch {
				case r.entry != wantEntry:
					t.Fatalf("frame %d: entry = %v, want %v", i, r.entry, wantEntry)
				case r.from != client.ID():
					t.Fatalf("frame %d from %v, want the client %v", i, r.from, client.ID())
				case r.entry && r.next != next:
					t.Fatalf("frame %d: next %v, want %v", i, r.next, next)
				case !bytes.Equal(r.pkt, seqPacket(uint64(i), testPacketSize)):
					t.Fatalf("frame %d: packet corrupted", i)
				}
			}
			const packets = (n + 2) / 3 // i%3 == 0
			eventually(t, 5*time.Second, "entry metrics", func() bool {
				return testutil.ToFloat64(home.m.entryIn) == n-packets && testutil.ToFloat64(client.m.entryOut) == n-packets
			})
			if got, want := testutil.ToFloat64(home.m.bytesIn), float64(packets*(2+testPacketSize)+(n-packets)*(2+EntryHeaderSize+testPacketSize)); got != want {
				t.Errorf("received bytes = %v, want %v", got, want)
			}
		})
	}
}

func TestTrySendViaReportsWhyItFails(t *testing.T) {
	home := startHost(t, Config{Entry: func(NodeID, NodeID, []byte) {}})
	client := startHost(t, Config{NoListen: true, SendQueue: 1})
	var next NodeID
	if err := client.TrySendVia(home.ID(), next, make([]byte, testPacketSize)); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("unknown via: %v", err)
	}
	if err := client.AddPeer(home.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if err := client.TrySendVia(home.ID(), next, make([]byte, testPacketSize-1)); !errors.Is(err, ErrPacketSize) {
		t.Errorf("short packet: %v", err)
	}
	full := false
	for range 10000 {
		if err := client.TrySendVia(home.ID(), next, make([]byte, testPacketSize)); errors.Is(err, ErrQueueFull) {
			full = true
			break
		}
	}
	if !full {
		t.Error("a one-packet queue never reported ErrQueueFull")
	}
	client.Close()
	if err := client.TrySendVia(home.ID(), next, make([]byte, testPacketSize)); !errors.Is(err, ErrClosed) {
		t.Errorf("closed host: %v", err)
	}
}

// A host that accepts no entry frames treats one as any wrong-size frame:
// the sender is disconnected and banned, and honest peers are still served.
func TestHostWithoutEntryDisconnectsEntrySenders(t *testing.T) {
	col := newCollector(4)
	victim := startHost(t, Config{Handler: col.handle})
	attacker := startHost(t, Config{})
	if err := attacker.AddPeer(onlyAddrs(victim.PeerInfo(), "/tcp/")); err != nil {
		t.Fatal(err)
	}
	if err := attacker.TrySendVia(victim.ID(), NodeID{1}, seqPacket(1, testPacketSize)); err != nil {
		t.Fatal(err)
	}
	assertDisconnected(t, victim, attacker, reasonFrameSize)
	assertStillServes(t, victim, col)
	select {
	case r := <-col.ch:
		t.Fatalf("the entry frame reached the packet handler (%d bytes)", len(r.pkt))
	default:
	}
}
