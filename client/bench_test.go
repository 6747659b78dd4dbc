package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// benchClient starts a client on n for a benchmark.
func benchClient(b *testing.B, n *testNet, rates Rates, trace func(Slot, bool, time.Time)) *Client {
	b.Helper()
	key, err := transport.GenerateIdentity()
	if err != nil {
		b.Fatal(err)
	}
	c, err := New(context.Background(), Config{
		Identity: key, DataDir: b.TempDir(), Home: n.homeInfo(0), Topology: n.Topology, Rates: &rates, trace: trace,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkCoverPacket is the cost of one drop cover packet: a route,
// the Sphinx packet (4 hops), the hand-off to the home's link.
func BenchmarkCoverPacket(b *testing.B) {
	o := defaultNet()
	o.sink = true
	n := mustNet(b, o)
	c := benchClient(b, n, Rates{}, nil) // no streams: the benchmark drives
	top := n.Topology()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		c.sendCover(top)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
}

// BenchmarkCoverFullRate runs a client whose three streams are far faster
// than it can build packets, so it sends as fast as it can: packets
// created per second by the stream machinery (scheduler, route choice,
// Sphinx, link hand-off). The first hops discard.
func BenchmarkCoverFullRate(b *testing.B) {
	o := defaultNet()
	o.sink = true
	n := mustNet(b, o)
	var sent atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	b.ReportAllocs()
	start := time.Now()
	benchClient(b, n, Rates{Payload: 1e6, Loop: 1e6, Drop: 1e6}, func(Slot, bool, time.Time) {
		if sent.Add(1) == target {
			close(done)
		}
	})
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
}

// BenchmarkCoverCPU measures the CPU the three streams cost at λ = 10/s
// each (30 packets/s), over 3 s of wall time per iteration: process CPU
// (user + system) per wall second, and per packet. The first hops are bare
// hosts that discard, so the figure is the client's (plus the sinks'
// reading, a small part).
func BenchmarkCoverCPU(b *testing.B) {
	o := defaultNet()
	o.sink = true
	n := mustNet(b, o)
	var sent atomic.Int64
	benchClient(b, n, Rates{Payload: 10, Loop: 10, Drop: 10}, func(Slot, bool, time.Time) { sent.Add(1) })
	time.Sleep(500 * time.Millisecond) // connections up
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var wall, used time.Duration
	var packets int64
	for b.Loop() {
		s0, c0, t0 := sent.Load(), cpu(), time.Now()
		time.Sleep(3 * time.Second)
		wall += time.Since(t0)
		used += cpu() - c0
		packets += sent.Load() - s0
	}
	b.ReportMetric(100*used.Seconds()/wall.Seconds(), "cpu%")
	b.ReportMetric(float64(packets)/wall.Seconds(), "packets/s")
	if packets > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(packets), "cpu-µs/packet")
	}
}

// BenchmarkSendRate finds the highest message rate one client sustains:
// at each payload rate λP, 64 goroutines Send real packets as fast as
// Send returns, for 3 s per iteration, through a real network (3 strata
// of 2 relays and a mailbox node, all in this process), while the loop
// stream (λL = 20/s) measures loss and latency. It reports the rate
// achieved, the loop loss and the mean loop latency; the sustainable rate
// is the highest whose loops neither get lost nor queue up.
func BenchmarkSendRate(b *testing.B) {
	for _, rate := range []float64{100, 400, 1000, 3000} {
		b.Run(fmt.Sprintf("lambdaP=%v", rate), func(b *testing.B) {
			n := mustNet(b, defaultNet())
			c := benchClient(b, n, Rates{Payload: rate, Loop: 20}, nil)
			mb := n.mboxes[0].id()
			go func() { // the mailbox node's inbox is only counted
				for range n.mboxes[0].inbox {
				}
			}()
			time.Sleep(time.Second) // connections up, loops flowing
			var sent, failed atomic.Int64
			var wall time.Duration
			s0 := c.Stats()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				var wg sync.WaitGroup
				start := time.Now()
				for range 64 {
					wg.Go(func() {
						for ctx.Err() == nil {
							if _, err := c.Send(ctx, ToMailbox(mb), []byte("load")); err == nil {
								sent.Add(1)
							} else if ctx.Err() == nil {
								failed.Add(1)
							}
						}
					})
				}
				wg.Wait()
				wall += time.Since(start)
				cancel()
			}
			// Let the loops still in flight come back or time out.
			time.Sleep(loopGrace + 500*time.Millisecond)
			c.expireLoops(time.Now())
			s := c.Stats()
			returned, lost := s.LoopsReturned-s0.LoopsReturned, s.LoopsLost-s0.LoopsLost
			b.ReportMetric(float64(sent.Load())/wall.Seconds(), "msgs/s")
			if returned+lost > 0 {
				b.ReportMetric(float64(lost)/float64(returned+lost), "loop-loss")
			}
			b.ReportMetric(float64(s.LoopLatency.Microseconds())/1000, "loop-ms")
			b.ReportMetric(float64(failed.Load()), "send-errors")
		})
	}
}

// BenchmarkHomeDeliver is the relay side's cost per packet for a client:
// the token lookup, the push frame and the hand-off to the client's link
// (a real connection; when its queue is full the packet is dropped and
// counted, as in production).
func BenchmarkHomeDeliver(b *testing.B) {
	f := newHomeFixture(b, 1, HomeConfig{})
	key := newKey(b)
	_, got := f.connect(b, key)
	go func() {
		for range got {
		}
	}()
	tok := f.token(key, 1)
	payload := f.payload(1)
	b.ReportAllocs()
	for b.Loop() {
		f.home.Deliver(tok, sphinx.SURBID{1}, payload)
	}
	b.ReportMetric(testutil.ToFloat64(f.home.m.pushed)/float64(b.N), "pushed/op")
}

// BenchmarkHomeEntry is the home's CPU per forwarded client packet: the
// entry handler's registration, rate and route checks and the hand-off to
// the first-stratum relay's link (a real connection; what its queue
// cannot take is dropped and counted as entry_full, as in production).
func BenchmarkHomeEntry(b *testing.B) {
	f := newHomeFixture(b, 1, HomeConfig{EntryRate: 1e12, EntryBurst: 1 << 30})
	c, _ := f.connect(b, nil)
	pkt := make([]byte, f.geo.PacketSize())
	from, next := c.ID(), f.first.ID()
	b.ReportAllocs()
	for b.Loop() {
		f.home.Entry(from, next, pkt)
	}
	b.ReportMetric(testutil.ToFloat64(f.home.m.entries)/float64(b.N), "forwarded/op")
}

// BenchmarkEntryLatency is the latency the home hop adds to a packet on
// its way into the first stratum, with no mixing delay anywhere: one
// packet at a time from a client host to a first-stratum relay, sent
// directly (TrySend, as clients did before) or through the home
// (TrySendVia, then the home's Entry and TrySend), over real loopback
// connections, timed from the send to the relay's handler.
func BenchmarkEntryLatency(b *testing.B) {
	for _, via := range []bool{false, true} {
		b.Run(map[bool]string{false: "direct", true: "via-home"}[via], func(b *testing.B) {
			f := newHomeFixture(b, 1, HomeConfig{EntryRate: 1e12, EntryBurst: 1 << 30})
			c, _ := f.connect(b, nil)
			if err := c.AddPeer(f.first.PeerInfo()); err != nil {
				b.Fatal(err)
			}
			pkt := make([]byte, f.geo.PacketSize())
			send := func() error {
				if via {
					return c.TrySendVia(f.host.ID(), f.first.ID(), pkt)
				}
				return c.TrySend(f.first.ID(), pkt)
			}
			// Warm up: connections and streams open.
			for range 10 {
				if err := send(); err != nil {
					b.Fatal(err)
				}
				<-f.arrived
			}
			var total time.Duration
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				if err := send(); err != nil {
					b.Fatal(err)
				}
				<-f.arrived
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/packet")
		})
	}
}

// BenchmarkReceiveReply is the client's cost per reply: the push parsed,
// the keys taken from the SURB database (a bbolt transaction, fsynced),
// the payload decrypted and delivered. Replies arrive one at a time, as
// on one connection.
func BenchmarkReceiveReply(b *testing.B) {
	format, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		b.Fatal(err)
	}
	g := format.Geometry()
	store, err := OpenSURBStore(filepath.Join(b.TempDir(), "surbs.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	key, err := transport.GenerateIdentity()
	if err != nil {
		b.Fatal(err)
	}
	home := transport.PeerInfo{PublicKey: key.Public().(ed25519.PublicKey)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Client{format: format, store: store, m: newMetrics(nil), log: slog.New(slog.DiscardHandler),
		recv: make(chan Reply, 1), loops: map[sphinx.SURBID]pendingLoop{}, ctx: ctx}
	c.home.Store(&homeState{info: home, id: sphinx.NodeID(transport.NodeIDFromPublicKey(home.PublicKey))})
	mix, pub, err := sphinx.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	frames := make([][]byte, b.N)
	for i := range frames {
		surb, keys, _, err := format.NewSURB(rand.Reader, []sphinx.Hop{{ID: sphinx.NodeID{1}, Key: pub}}, sphinx.DeliveryToken{2}, sphinx.DelayPolicy{})
		if err != nil {
			b.Fatal(err)
		}
		if err := store.Put(1, keys); err != nil {
			b.Fatal(err)
		}
		pkt, err := format.NewReply(surb, Pad(g.PayloadCapacity(), []byte("reply")))
		if err != nil {
			b.Fatal(err)
		}
		var res sphinx.Result
		if err := format.Unwrap(mix, sphinx.DelayPolicy{}, pkt, &res); err != nil {
			b.Fatal(err)
		}
		frames[i] = make([]byte, g.PacketSize())
		if err := EncodePush(g, frames[i], keys.ID, res.Payload); err != nil {
			b.Fatal(err)
		}
	}
	from := transport.NodeIDFromPublicKey(home.PublicKey)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.handle(from, frames[i])
		<-c.recv
	}
	b.StopTimer()
	if s := c.Stats(); s.Replies != uint64(b.N) {
		b.Fatalf("stats %+v", s)
	}
}
