package queue

import (
	"bytes"
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// forgedPartial is one chunk of a forged message under stream s: it claims
// a message of length bytes and carries one (junk) symbol, so the message
// stays partial.
func forgedPartial(t *testing.T, s StreamID, seq uint64, length int) []byte {
	t.Helper()
	g, err := planMessage(length, 2030)
	if err != nil {
		t.Fatal(err)
	}
	c := Chunk{ID: NewMsgID(s, seq), Flags: FlagReliable, Length: uint32(length), T: uint16(g.t), K: uint16(g.k), KPrime: uint16(g.kPrime), ESI: 1, Symbols: make([]byte, g.t)}
	b := newBuilder(2030)
	if !b.chunk(&c) {
		t.Fatal("forged chunk does not fit")
	}
	return b.buf
}

// honestPackets queues one Reliable message of n bytes at a real sender
// and returns it and its first round's packets.
func honestPackets(t *testing.T, clk *clock, n int) ([]byte, MsgID, []Packet) {
	t.Helper()
	a, _ := stepped(t, clk, nil)
	body := randomBody(rand.New(rand.NewPCG(uint64(n), 5)), n)
	id, err := a.Put(context.Background(), "B", body, Reliable)
	if err != nil {
		t.Fatal(err)
	}
	a.step(context.Background())
	var pkts []Packet
	for {
		p, ok := a.Next(clk.Now())
		if !ok {
			break
		}
		pkts = append(pkts, p)
	}
	return body, id, pkts
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestForgedPartialsDoNotBlockHonestSenders: an attacker who can put items
// into our mailbox (every contact can; all items reach the queue with the
// same from) sends 1,000 forged partial messages of 1 MiB each — under
// 1,000 stream ids, then under one stream id, then under 5,000 stream ids
// (more than MaxStreams) — interleaved with an honest sender's 64 KiB
// message. The honest message reassembles and is delivered each time, and
// the receiver's state stays within its documented bounds (streams,
// reassembly bytes, counted bytes, and the heap measured).
func TestForgedPartialsDoNotBlockHonestSenders(t *testing.T) {
	cases := []struct {
		name    string
		forged  int
		streams int
	}{
		{"1000 streams", 1000, 1000},
		{"one stream", 1000, 1},
		{"5000 streams", 5000, 5000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			body, id, honest := honestPackets(t, clk, 64<<10)
			base := heapInUse()
			r, _ := stepped(t, clk, nil) // default limits
			cfg := r.cfg
			var got []Message
			hi := 0
			maxBytes, maxCounted, maxStreams := 0, 0, 0
			for i := range tc.forged {
				var s StreamID
				s[0], s[1], s[2] = 0xee, byte(i%tc.streams>>8), byte(i%tc.streams)
				s[3] = byte(i % tc.streams >> 16)
				if _, err := r.Handle("mailbox", forgedPartial(t, s, uint64(i), 1<<20)); err != nil {
					t.Fatal(err)
				}
				// the honest round trickles in among the forgeries
				if i%(tc.forged/len(honest)) == 0 && hi < len(honest) {
					clk.Add(time.Millisecond)
					ms, err := r.Handle("mailbox", honest[hi].Payload)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, ms...)
					hi++
				}
				if i%100 == 0 {
					st := r.Stats()
					maxBytes = max(maxBytes, st.ReassemblyBytes)
					maxCounted = max(maxCounted, st.ReceiverBytes)
					maxStreams = max(maxStreams, st.Streams)
				}
			}
			for ; hi < len(honest); hi++ {
				ms, err := r.Handle("mailbox", honest[hi].Payload)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ms...)
			}
			if len(got) != 1 || got[0].ID != id || !bytes.Equal(got[0].Body, body) {
				t.Fatalf("honest message: %d delivered", len(got))
			}
			st := r.Stats()
			maxBytes = max(maxBytes, st.ReassemblyBytes)
			maxCounted = max(maxCounted, st.ReceiverBytes)
			maxStreams = max(maxStreams, st.Streams)
			heap := heapInUse() - min(base, heapInUse())
			if maxBytes > cfg.ReassemblyCap || maxStreams > cfg.MaxStreams || st.Streams > cfg.MaxStreams || st.AcksDue > st.Streams {
				t.Fatalf("over the bounds: reassembly %d B (cap %d), streams %d (max %d), acks due %d", maxBytes, cfg.ReassemblyCap, maxStreams, cfg.MaxStreams, st.AcksDue)
			}
			// the counted bytes are what the receiver holds: the heap
			// measured stays within them plus the stream structures
			bound := cfg.ReassemblyCap + cfg.MaxStreams*(streamOverhead+doneEntryCost*maxDoneSparse+maxStreamSURBs*400)
			if maxCounted > bound || heap > uint64(bound)+8<<20 {
				t.Fatalf("receiver holds %d B counted, %d B of heap; bound %d", maxCounted, heap, bound)
			}
			for _, stc := range r.in {
				if stc.bytes > cfg.StreamReassemblyCap {
					t.Fatalf("a stream holds %d B, cap %d", stc.bytes, cfg.StreamReassemblyCap)
				}
			}
			t.Logf("%d forged under %d stream ids: honest delivered; max reassembly %d B (cap %d), counted %d B, heap +%d B; streams %d (max %d), partials %d, evicted %d, streams dropped %d",
				tc.forged, tc.streams, maxBytes, cfg.ReassemblyCap, maxCounted, heap, maxStreams, cfg.MaxStreams, st.Reassembling, st.Evicted, st.StreamsDropped)
		})
	}
}

// TestForgedStreamsArePruned: forged Reliable messages that complete
// (one-packet junk under 2,000 stream ids, no SURB ever) leave acks due and
// streams behind: the acks are dropped after ReassemblyTTL, the streams
// after StreamTTL, and the count never passes MaxStreams meanwhile.
func TestForgedStreamsArePruned(t *testing.T) {
	clk := newClock()
	r, _ := stepped(t, clk, func(c *Config) { c.MaxStreams = 500; c.StreamTTL = time.Hour })
	g, _ := planMessage(10, 2030)
	for i := range 2000 {
		s := StreamID{0xaa, byte(i >> 8), byte(i)}
		c := Chunk{ID: NewMsgID(s, 0), Flags: FlagReliable, Length: 10, T: uint16(g.t), K: uint16(g.k), KPrime: uint16(g.kPrime), Symbols: make([]byte, (g.kPrime+2)*g.t)}
		b := newBuilder(2030)
		b.chunk(&c)
		ms, err := r.Handle("mailbox", b.buf)
		if err != nil || len(ms) != 1 {
			t.Fatalf("junk message %d: %v, %d decoded", i, err, len(ms))
		}
		if st := r.Stats(); st.Streams > 500 || st.AcksDue > 500 {
			t.Fatalf("after %d: %d streams, %d acks due", i, st.Streams, st.AcksDue)
		}
	}
	if st := r.Stats(); st.Streams != 500 || st.AcksDue != 500 || st.StreamsDropped != 1500 {
		t.Fatalf("stats %+v", st)
	}
	clk.Add(r.cfg.ReassemblyTTL)
	r.Next(clk.Now())
	if st := r.Stats(); st.AcksDue != 0 || st.Streams != 500 {
		t.Fatalf("after ReassemblyTTL: %d acks due, %d streams", st.AcksDue, st.Streams)
	}
	clk.Add(time.Hour)
	r.Next(clk.Now())
	if st := r.Stats(); st.Streams != 0 || st.ReceiverBytes != 0 {
		t.Fatalf("after StreamTTL: %d streams, %d B", st.Streams, st.ReceiverBytes)
	}
}
