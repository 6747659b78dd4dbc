package transport

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTransport sends fixed-size Sphinx-sized packets from one host to
// another over real libp2p connections on loopback, with Send waiting on the
// bounded queue as a relay's forward stage would. One op is one packet
// received by the other host's Handler.
func BenchmarkTransport(b *testing.B) {
	cases := []struct {
		name  string
		sec   []Security
		addrs string
	}{
		{"tcp-tls", []Security{SecurityTLS}, "/tcp/"},
		{"tcp-noise", []Security{SecurityNoise}, "/tcp/"},
		{"quic", nil, "/quic-v1"},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			var got atomic.Int64
			var target atomic.Int64
			done := make(chan struct{}, 1)
			recv := startHost(b, Config{Security: bc.sec, Handler: func(NodeID, []byte) {
				if got.Add(1) == target.Load() {
					done <- struct{}{}
				}
			}})
			send := startHost(b, Config{Security: bc.sec})
			if err := send.AddPeer(onlyAddrs(recv.PeerInfo(), bc.addrs)); err != nil {
				b.Fatal(err)
			}
			pkt := seqPacket(1, testPacketSize)
			ctx := context.Background()
			// Warm up: connect, open the stream, grow the windows.
			const warm = 2000
			target.Store(warm)
			for range warm {
				if err := send.Send(ctx, recv.ID(), pkt); err != nil {
					b.Fatal(err)
				}
			}
			wait(b, done)

			got.Store(0)
			target.Store(int64(b.N))
			b.SetBytes(testPacketSize)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if err := send.Send(ctx, recv.ID(), pkt); err != nil {
					b.Fatal(err)
				}
			}
			wait(b, done)
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pkt/s")
		})
	}
}

// BenchmarkTrySendVia sends entry frames from a client host to its home over
// TCP/TLS, as a client sending through its home does; one op is one entry
// frame handed to the home's EntryHandler. TrySendVia never waits, so a full
// queue is retried after a yield; full/op counts those retries, whose error
// values are the allocations reported (a queued frame allocates nothing).
func BenchmarkTrySendVia(b *testing.B) {
	var got, target atomic.Int64
	done := make(chan struct{}, 1)
	home := startHost(b, Config{Entry: func(NodeID, NodeID, []byte) {
		if got.Add(1) == target.Load() {
			done <- struct{}{}
		}
	}})
	client := startHost(b, Config{NoListen: true})
	if err := client.AddPeer(onlyAddrs(home.PeerInfo(), "/tcp/")); err != nil {
		b.Fatal(err)
	}
	pkt := seqPacket(1, testPacketSize)
	next := NodeID{1, 2, 3}
	full := 0
	send := func(n int) {
		for range n {
			for {
				err := client.TrySendVia(home.ID(), next, pkt)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrQueueFull) {
					b.Fatal(err)
				}
				full++
				runtime.Gosched()
			}
		}
	}
	const warm = 2000
	target.Store(warm)
	send(warm)
	wait(b, done)

	got.Store(0)
	full = 0
	target.Store(int64(b.N))
	b.SetBytes(EntryHeaderSize + testPacketSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	send(b.N)
	wait(b, done)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pkt/s")
	b.ReportMetric(float64(full)/float64(b.N), "full/op")
}

func wait(b *testing.B, done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatal("packets did not all arrive")
	}
}

// BenchmarkFrameReader measures the receive-side framing alone: one op is one
// packet lent out of the reader's buffer.
func BenchmarkFrameReader(b *testing.B) {
	const batch = 256
	var pkts [][]byte
	for i := range batch {
		pkts = append(pkts, seqPacket(uint64(i), testPacketSize))
	}
	stream := encodeFrames(testPacketSize, pkts...)
	r := bytes.NewReader(stream)
	fr := newFrameReader(r, testPacketSize, false)
	b.SetBytes(testPacketSize)
	b.ReportAllocs()
	start := time.Now()
	for i := range b.N {
		if i%batch == 0 {
			r.Reset(stream)
			fr.br.Reset(r)
			fr.pending = 0
		}
		if _, err := fr.next(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pkt/s")
}
