package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rawStream opens a mix stream from a to b with libp2p directly, bypassing
// the framing a well-behaved host does, as an attacker would.
func rawStream(t *testing.T, a, b *Host) network.Stream {
	t.Helper()
	if err := a.AddPeer(onlyAddrs(b.PeerInfo(), "/tcp/")); err != nil {
		t.Fatal(err)
	}
	pid, err := a.peerID(b.ID())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := a.host.NewStream(ctx, pid, ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertDisconnected checks that victim cut attacker off for reason and
// still serves an honest peer.
func assertDisconnected(t *testing.T, victim, attacker *Host, reason string) {
	t.Helper()
	eventually(t, 10*time.Second, "disconnect metric", func() bool {
		return testutil.ToFloat64(victim.m.disconnects.WithLabelValues(reason)) == 1
	})
	eventually(t, 10*time.Second, "attacker disconnected", func() bool {
		return !attacker.IsConnected(victim.ID()) && !victim.IsConnected(attacker.ID())
	})
	// The ban refuses the attacker's next connection. In TLS 1.3 the
	// dialer finishes its handshake first, so its Connect may succeed
	// before the victim's gater drops the connection.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = attacker.Connect(ctx, victim.ID())
	eventually(t, 10*time.Second, "ban refusal counted", func() bool {
		return testutil.ToFloat64(victim.m.disconnects.WithLabelValues(reasonBanned)) >= 1
	})
	eventually(t, 10*time.Second, "banned attacker disconnected", func() bool {
		return !attacker.IsConnected(victim.ID()) && !victim.IsConnected(attacker.ID())
	})
}

// assertStillServes checks that victim takes packets from an honest peer.
func assertStillServes(t *testing.T, victim *Host, col *collector) {
	t.Helper()
	honest := startHost(t, Config{})
	if err := honest.AddPeer(onlyAddrs(victim.PeerInfo(), "/tcp/")); err != nil {
		t.Fatal(err)
	}
	pkt := seqPacket(42, testPacketSize)
	if err := honest.TrySend(victim.ID(), pkt); err != nil {
		t.Fatal(err)
	}
	if r := col.next(t, 10*time.Second); r.from != honest.ID() || !bytes.Equal(r.pkt, pkt) {
		t.Fatalf("honest peer's packet not delivered intact after the attack")
	}
}

func TestBadInputDisconnectsThePeer(t *testing.T) {
	frame := func(length, bodyLen int) []byte {
		f := make([]byte, 2+bodyLen)
		binary.BigEndian.PutUint16(f, uint16(length))
		return f
	}
	garbage := make([]byte, 5000)
	if _, err := rand.Read(garbage); err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(garbage, testPacketSize^0x5a5a) // not the packet size by chance
	tests := []struct {
		name    string
		send    []byte
		goodPkt bool // one valid frame precedes the bad bytes
	}{
		{"a frame one byte too long", frame(testPacketSize+1, testPacketSize+1), false},
		{"a frame one byte too short", frame(testPacketSize-1, testPacketSize-1), false},
		{"an empty frame", frame(0, 0), false},
		{"garbage", garbage, false},
		{"garbage after a valid frame", garbage, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			col := newCollector(4)
			victim := startHost(t, Config{Handler: col.handle})
			attacker := startHost(t, Config{})
			s := rawStream(t, attacker, victim)
			var out []byte
			if tc.goodPkt {
				out = append(frame(testPacketSize, 0), seqPacket(1, testPacketSize)...)
			}
			out = append(out, tc.send...)
			_, _ = s.Write(out)
			if tc.goodPkt {
				if r := col.next(t, 10*time.Second); !bytes.Equal(r.pkt, seqPacket(1, testPacketSize)) {
					t.Fatal("valid frame before the garbage was not delivered")
				}
			}
			assertDisconnected(t, victim, attacker, reasonFrameSize)
			assertStillServes(t, victim, col)
			if got := testutil.ToFloat64(victim.m.badFrames.WithLabelValues(reasonFrameSize)); got != 1 {
				t.Errorf("bad frames = %v, want 1", got)
			}
		})
	}
}

func TestTooManyStreamsDisconnectsThePeer(t *testing.T) {
	col := newCollector(4)
	victim := startHost(t, Config{Handler: col.handle, MaxStreamsPerPeer: 3})
	attacker := startHost(t, Config{})
	for i := range 4 {
		s := rawStream(t, attacker, victim)
		// One byte of a header makes the stream real at the victim and
		// leaves its reader waiting.
		if _, err := s.Write([]byte{0}); err != nil && i < 3 {
			t.Fatalf("stream %d: %v", i, err)
		}
		if i < 3 {
			eventually(t, 5*time.Second, "stream accepted", func() bool {
				return testutil.ToFloat64(victim.m.inboundStreams) == float64(i+1)
			})
		}
	}
	assertDisconnected(t, victim, attacker, reasonTooManyStrs)
	eventually(t, 5*time.Second, "streams closed", func() bool {
		return testutil.ToFloat64(victim.m.inboundStreams) == 0
	})
	assertStillServes(t, victim, col)
}

func TestStreamEndingInsideAFrameIsNotPunished(t *testing.T) {
	col := newCollector(4)
	victim := startHost(t, Config{Handler: col.handle})
	peer := startHost(t, Config{})
	s := rawStream(t, peer, victim)
	var f []byte
	f = binary.BigEndian.AppendUint16(f, testPacketSize)
	f = append(f, seqPacket(3, testPacketSize)[:100]...)
	if _, err := s.Write(f); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "stream closed", func() bool {
		return testutil.ToFloat64(victim.m.inboundStreams) == 0
	})
	if !peer.IsConnected(victim.ID()) {
		t.Error("peer was disconnected for a truncated stream")
	}
	if err := peer.TrySend(victim.ID(), seqPacket(4, testPacketSize)); err != nil {
		t.Fatal(err)
	}
	if r := col.next(t, 10*time.Second); !bytes.Equal(r.pkt, seqPacket(4, testPacketSize)) {
		t.Fatal("packet after truncated stream corrupted")
	}
	if got := testutil.ToFloat64(victim.m.disconnects.WithLabelValues(reasonFrameSize)); got != 0 {
		t.Errorf("disconnects = %v, want 0", got)
	}
}
