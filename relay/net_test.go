package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// node is a relay on a real libp2p host, as in production: the host hands
// packets to the relay, the relay forwards with the host's TrySend.
type node struct {
	host  *transport.Host
	relay atomic.Pointer[Relay]
	mix   *sphinx.PrivateKey
	pub   sphinx.PublicKey
	dir   string
	local Local
	// routes, if set before start, is the relay's Config.Routes.
	routes *Routes
	// noForward makes the node a final hop only (a mailbox node).
	noForward bool
}

func (n *node) id() sphinx.NodeID { return sphinx.NodeID(n.host.ID()) }
func (n *node) hop() sphinx.Hop   { return sphinx.Hop{ID: n.id(), Key: n.pub} }

func newHost(t testing.TB, handler transport.Handler) *transport.Host {
	t.Helper()
	return newHostQueue(t, handler, 4096)
}

// newHostQueue is newHost with a send queue of queue packets a peer.
func newHostQueue(t testing.TB, handler transport.Handler, queue int) *transport.Host {
	t.Helper()
	idk, err := transport.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	h, err := transport.New(context.Background(), transport.Config{
		Identity:    idk,
		PacketSize:  sphinx.DefaultGeometry().PacketSize(),
		Handler:     handler,
		SendQueue:   queue,
		ListenAddrs: listenAddrs(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newNode(t testing.TB, f *sphinx.Format, delay sphinx.DelayPolicy, local Local) *node {
	t.Helper()
	n := &node{dir: t.TempDir(), local: local}
	var err error
	if n.mix, n.pub, err = sphinx.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	n.host = newHost(t, func(from transport.NodeID, pkt []byte) {
		if r := n.relay.Load(); r != nil {
			r.HandlePacket(sphinx.NodeID(from), pkt)
		}
	})
	n.start(t, f, delay)
	return n
}

// start runs a fresh relay (and replay DB) on the node's host and state
// directory, as a restarted process would.
func (n *node) start(t testing.TB, f *sphinx.Format, delay sphinx.DelayPolicy) *Relay {
	t.Helper()
	db, err := OpenReplayDB(n.dir, 1<<22)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewKeyring(1, EpochKey{Epoch: 1, Key: n.mix})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Format: f, Keys: keys, Delay: delay, Replay: db, Local: n.local, NoForward: n.noForward, Link: n.link()}
	if n.routes != nil {
		cfg.Routes = n.routes
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if old := n.relay.Swap(r); old != nil {
		old.Close()
		old.cfg.Replay.Close()
	}
	t.Cleanup(func() {
		if n.relay.CompareAndSwap(r, nil) {
			r.Close()
			db.Close()
		}
	})
	return r
}

// link is the node's Link as package node builds it: packets to itself
// stay in the process, others go to the host's TrySend (never waiting),
// and a full queue is told apart.
func (n *node) link() Link {
	self := n.id()
	return LinkFunc(func(_ context.Context, to sphinx.NodeID, pkt []byte) error {
		if to == self {
			if r := n.relay.Load(); r != nil {
				return r.Inject(pkt)
			}
			return ErrBusy
		}
		err := n.host.TrySend(transport.NodeID(to), pkt)
		if errors.Is(err, transport.ErrQueueFull) {
			return fmt.Errorf("%w: %w", ErrLinkFull, err)
		}
		return err
	})
}

// link lets every node send to every other.
func link(t testing.TB, hosts ...*transport.Host) {
	t.Helper()
	for _, a := range hosts {
		for _, b := range hosts {
			if a != b {
				if err := a.AddPeer(b.PeerInfo()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// arrivals records the loops a sink relay receives.
type arrivals struct {
	mu  sync.Mutex
	got map[sphinx.LoopID]time.Time
	msg map[sphinx.LoopID][]byte
	ch  chan sphinx.LoopID
}

func newArrivals() *arrivals {
	return &arrivals{got: map[sphinx.LoopID]time.Time{}, msg: map[sphinx.LoopID][]byte{}, ch: make(chan sphinx.LoopID, 1024)}
}

func (a *arrivals) loop(id sphinx.LoopID, payload []byte) {
	a.mu.Lock()
	a.got[id] = time.Now()
	a.msg[id] = bytes.Clone(payload)
	a.mu.Unlock()
	a.ch <- id
}

func TestThreeRelaysOnLoopback(t *testing.T) {
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		t.Fatal(err)
	}
	delay := sphinx.DelayPolicy{Mean: 20 * time.Millisecond}
	sink := newArrivals()
	relays := []*node{newNode(t, f, delay, Local{}), newNode(t, f, delay, Local{}), newNode(t, f, delay, Local{})}
	last := newNode(t, f, delay, Local{Loop: sink.loop})
	sender := newHost(t, nil)
	hosts := []*transport.Host{sender, last.host}
	for _, r := range relays {
		hosts = append(hosts, r.host)
	}
	link(t, hosts...)
	path := []sphinx.Hop{relays[0].hop(), relays[1].hop(), relays[2].hop(), last.hop()}
	outer := t
	send := func(pkt []byte) {
		if err := sender.Send(context.Background(), transport.NodeID(path[0].ID), pkt); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(id sphinx.LoopID, within time.Duration) bool {
		deadline := time.After(within)
		for {
			select {
			case got := <-sink.ch:
				if got == id {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}

	// Warm up: the first packet waits for the connections to be dialled.
	warm, _, err := f.NewPacket(rand.Reader, path, sphinx.LoopBack(sphinx.LoopID{0xaa}), sphinx.DelayPolicy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	send(warm)
	if !wait(sphinx.LoopID{0xaa}, 10*time.Second) {
		t.Fatal("warm-up packet did not arrive")
	}

	t.Run("packets arrive intact after their delay", func(t *testing.T) {
		for i := range 10 {
			var id sphinx.LoopID
			id[0] = byte(i)
			msg := []byte("through three strata")
			pkt, route, err := f.NewPacket(rand.Reader, path, sphinx.LoopBack(id), delay, msg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			send(pkt)
			if !wait(id, 5*time.Second) {
				t.Fatalf("packet %d did not arrive", i)
			}
			sink.mu.Lock()
			took, payload := sink.got[id].Sub(start), sink.msg[id]
			sink.mu.Unlock()
			if !bytes.HasPrefix(payload, msg) {
				t.Fatalf("payload %q", payload[:32])
			}
			// The relays held it for exactly the route's delays; the
			// links add a little.
			// (2 s: a generous bound on the shared, loaded machine.)
			if took < route.Total-time.Millisecond || took > route.Total+2*time.Second {
				t.Fatalf("packet %d took %v, route delay %v", i, took, route.Total)
			}
		}
	})

	t.Run("a replay is dropped at the first relay, even after a restart", func(t *testing.T) {
		id := sphinx.LoopID{0xee}
		pkt, _, err := f.NewPacket(rand.Reader, path, sphinx.LoopBack(id), sphinx.DelayPolicy{}, []byte("once"))
		if err != nil {
			t.Fatal(err)
		}
		send(pkt)
		if !wait(id, 5*time.Second) {
			t.Fatal("original did not arrive")
		}
		first := relays[0].relay.Load()
		send(pkt)
		if wait(id, 500*time.Millisecond) {
			t.Fatal("replay arrived")
		}
		if got := testutil.ToFloat64(first.m.dropped.WithLabelValues(reasonReplay)); got != 1 {
			t.Fatalf("replay drops %v", got)
		}
		restarted := relays[0].start(outer, f, delay)
		send(pkt)
		if wait(id, 500*time.Millisecond) {
			t.Fatal("replay arrived after the first relay restarted")
		}
		if got := testutil.ToFloat64(restarted.m.dropped.WithLabelValues(reasonReplay)); got != 1 {
			t.Fatalf("restarted relay: replay drops %v", got)
		}
	})

	t.Run("garbage is dropped and counted", func(t *testing.T) {
		r := relays[0].relay.Load()
		junk := make([]byte, f.Geometry().PacketSize())
		rand.Read(junk)
		send(junk)
		deadline := time.Now().Add(2 * time.Second)
		for testutil.ToFloat64(r.m.dropped.WithLabelValues(reasonMAC)) < 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := testutil.ToFloat64(r.m.dropped.WithLabelValues(reasonMAC)); got != 1 {
			t.Fatalf("MAC drops %v", got)
		}
	})
}

// listenAddrs lets benchmarks compare transports: STRATA_BENCH_TCP=1 or
// STRATA_BENCH_QUIC=1 restricts the hosts to one; by default they offer both
// and libp2p picks.
func listenAddrs() []string {
	if os.Getenv("STRATA_BENCH_TCP") != "" {
		return []string{"/ip4/127.0.0.1/tcp/0"}
	}
	if os.Getenv("STRATA_BENCH_QUIC") != "" {
		return []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	return nil
}
