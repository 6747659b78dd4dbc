package relay

import (
	"context"
	"crypto/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// makePackets builds n distinct packets over path on all cores.
func makePackets(b *testing.B, f *sphinx.Format, path []sphinx.Hop, n int) [][]byte {
	pkts := make([][]byte, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				p, _, err := f.NewPacket(rand.Reader, path, sphinx.DeliverToMailbox(), sphinx.DelayPolicy{}, nil)
				if err != nil {
					b.Error(err)
					return
				}
				pkts[i] = p
			}
		})
	}
	wg.Wait()
	return pkts
}

// benchWindow is how many packets benchChain keeps in flight.
const benchWindow = 512

// benchChain pushes b.N packets from a sender through the relays to a sink
// host, all real libp2p hosts on loopback, with zero delays and at most
// benchWindow packets in flight, and reports packets per second end to end. With routes, each relay enforces the
// restricted routes of an epoch whose strata are the sender, each relay
// and the sink, one node a stratum.
func benchChain(b *testing.B, relays int, routes bool) {
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	sink := newHost(b, func(transport.NodeID, []byte) { received.Add(1) })
	_, sinkKey, _ := sphinx.GenerateKey(rand.Reader)
	nodes := make([]*node, relays)
	hosts := []*transport.Host{sink}
	path := make([]sphinx.Hop, 0, relays+1)
	for i := range nodes {
		if routes {
			nodes[i] = newRoutedNode(b, f, sphinx.DelayPolicy{}, Local{}, false, 4096)
		} else {
			nodes[i] = newNode(b, f, sphinx.DelayPolicy{}, Local{})
		}
		hosts = append(hosts, nodes[i].host)
		path = append(path, nodes[i].hop())
	}
	path = append(path, sphinx.Hop{ID: sphinx.NodeID(sink.ID()), Key: sinkKey})
	sender := newHost(b, nil)
	link(b, append(hosts, sender)...)
	if routes {
		layers := [][]sphinx.NodeID{{hostID(sender)}}
		for _, h := range path {
			layers = append(layers, []sphinx.NodeID{h.ID})
		}
		g, err := pki.NewGraphFromLayers(layers, pki.DefaultSuccessors, [32]byte{})
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range nodes {
			n.routes.Set(&View{Epoch: 1, Graph: g})
		}
	}
	// Warm the connections up.
	for _, p := range makePackets(b, f, path, 10) {
		sender.Send(context.Background(), transport.NodeID(path[0].ID), p)
	}
	for deadline := time.Now().Add(5 * time.Second); received.Load() < 10 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	pkts := makePackets(b, f, path, b.N)
	base := received.Load()
	dropped := func() float64 {
		var d float64
		for _, n := range nodes {
			for _, r := range allReasons {
				d += testutil.ToFloat64(n.relay.Load().m.dropped.WithLabelValues(r))
			}
		}
		return d
	}
	var lost int64 // drops counted so far, read every 10 ms while the window is full
	counted := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i, p := range pkts {
		// An end-to-end window: with delays 0 the first relay would
		// otherwise outrun the later ones on two shared cores, and since
		// a relay never waits for its successor the excess would be
		// dropped after costing an unwrap. The window measures what the
		// chain carries, not what it can be made to drop.
		for int64(i)-(received.Load()-base)-lost >= benchWindow {
			time.Sleep(20 * time.Microsecond)
			if time.Since(counted) > 10*time.Millisecond {
				lost, counted = int64(dropped()), time.Now()
			}
		}
		if err := sender.Send(context.Background(), transport.NodeID(path[0].ID), p); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for received.Load()-base+int64(dropped()) < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
	}
	b.StopTimer()
	got := received.Load() - base
	b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "pkt/s")
	b.ReportMetric(1-float64(got)/float64(b.N), "loss")
}

// BenchmarkRelay: one relay between a sender and a sink over real libp2p
// connections, delays 0, routes enforced (target ≥ 15,000 pkt/s), and
// without route checks for comparison.
func BenchmarkRelay(b *testing.B) {
	b.Run("routes", func(b *testing.B) { benchChain(b, 1, true) })
	b.Run("no-routes", func(b *testing.B) { benchChain(b, 1, false) })
}

// BenchmarkRelayChain: a 3-relay chain in one process, delays 0, routes
// enforced (target ≥ 8,000 pkt/s end to end), and without for comparison.
func BenchmarkRelayChain(b *testing.B) {
	b.Run("routes", func(b *testing.B) { benchChain(b, 3, true) })
	b.Run("no-routes", func(b *testing.B) { benchChain(b, 3, false) })
}
