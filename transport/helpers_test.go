package transport

import (
	"context"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// testPacketSize is the size of a Sphinx packet: header 293 + payload 2048.
const testPacketSize = 2341

// startHost starts a host on loopback with defaults for the fields the test
// leaves zero, and closes it when the test ends.
func startHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if cfg.Identity == nil {
		key, err := GenerateIdentity()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Identity = key
	}
	if cfg.PacketSize == 0 {
		cfg.PacketSize = testPacketSize
	}
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// collector is a Handler that keeps copies of what it receives.
type collector struct {
	ch chan received
}

type received struct {
	from NodeID
	pkt  []byte
}

func newCollector(n int) *collector { return &collector{ch: make(chan received, n)} }

func (c *collector) handle(from NodeID, pkt []byte) {
	c.ch <- received{from: from, pkt: append([]byte(nil), pkt...)}
}

// next waits for one packet.
func (c *collector) next(t testing.TB, d time.Duration) received {
	t.Helper()
	select {
	case r := <-c.ch:
		return r
	case <-time.After(d):
		t.Fatalf("no packet within %v", d)
		return received{}
	}
}

// seqPacket makes a packet carrying seq in its first 8 bytes and a pattern
// derived from seq in the rest, so that corruption and reordering show.
func seqPacket(seq uint64, size int) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint64(p, seq)
	for i := 8; i < size; i++ {
		p[i] = byte(seq*31 + uint64(i)*7)
	}
	return p
}

// onlyAddrs keeps the addresses that contain substr ("/tcp/" or "/quic-v1").
func onlyAddrs(info PeerInfo, substr string) PeerInfo {
	var keep []string
	for _, a := range info.Addrs {
		if strings.Contains(a, substr) {
			keep = append(keep, a)
		}
	}
	info.Addrs = keep
	return info
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger logs to the test at debug level when -v is given.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
