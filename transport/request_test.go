package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const testProto = "/strata/test-request/1"

// echoHandler answers "echo:" || req and records who asked.
func echoHandler(calls *atomic.Int64, from *atomic.Value) RequestHandler {
	return func(f NodeID, req []byte) ([]byte, error) {
		calls.Add(1)
		from.Store(f)
		return append([]byte("echo:"), req...), nil
	}
}

func TestRequestGetsTheAnswer(t *testing.T) {
	for _, tr := range []string{"/tcp/", "/quic-v1"} {
		t.Run(tr, func(t *testing.T) {
			var calls atomic.Int64
			var from atomic.Value
			home := startHost(t, Config{})
			home.Handle(testProto, echoHandler(&calls, &from))
			client := startHost(t, Config{NoListen: true})
			if err := client.AddPeer(onlyAddrs(home.PeerInfo(), tr)); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			// The first request dials; the second reuses the connection.
			for i, req := range [][]byte{[]byte("token"), {}, bytes.Repeat([]byte{7}, MaxRequestSize-5)} {
				resp, err := client.Request(ctx, home.ID(), testProto, req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if !bytes.Equal(resp, append([]byte("echo:"), req...)) {
					t.Fatalf("request %d: answer %q", i, resp[:min(len(resp), 16)])
				}
				if got := from.Load().(NodeID); got != client.ID() {
					t.Fatalf("handler saw %v, want the client %v", got, client.ID())
				}
			}
			if n := len(home.host.Network().ConnsToPeer(client.host.ID())); n != 1 {
				t.Errorf("%d connections, want 1 reused by every request", n)
			}
			// The home asks the client back over the connection the client
			// opened: a NoListen host is reachable that way only.
			client.Handle(testProto, echoHandler(&calls, &from))
			resp, err := home.Request(ctx, client.ID(), testProto, []byte("back"))
			if err != nil || string(resp) != "echo:back" {
				t.Fatalf("request to the client over its connection: %q, %v", resp, err)
			}
			if got := from.Load().(NodeID); got != home.ID() {
				t.Fatalf("client's handler saw %v, want the home", got)
			}
			if got := testutil.ToFloat64(home.m.requestsIn.WithLabelValues(resultOK)); got != 3 {
				t.Errorf("home served %v requests, want 3", got)
			}
		})
	}
}

func TestRequestRefusals(t *testing.T) {
	var calls atomic.Int64
	home := startHost(t, Config{})
	home.Handle("/strata/fail/1", func(NodeID, []byte) ([]byte, error) {
		calls.Add(1)
		return nil, errors.New("no such token")
	})
	home.Handle("/strata/big/1", func(NodeID, []byte) ([]byte, error) {
		calls.Add(1)
		return make([]byte, MaxRequestSize+1), nil
	})
	home.Handle("/strata/removed/1", func(NodeID, []byte) ([]byte, error) { return nil, nil })
	home.Handle("/strata/removed/1", nil)
	var echoCalls atomic.Int64
	var from atomic.Value
	home.Handle(testProto, echoHandler(&echoCalls, &from))
	client := startHost(t, Config{})
	if err := client.AddPeer(home.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name  string
		proto string
		req   []byte
		want  error
	}{
		{"a handler error resets the stream", "/strata/fail/1", []byte("x"), ErrRequestRefused},
		{"an oversize answer is not sent", "/strata/big/1", []byte("x"), ErrRequestRefused},
		{"an unknown protocol is refused", "/strata/unknown/1", []byte("x"), ErrRequestRefused},
		{"a removed handler is gone", "/strata/removed/1", []byte("x"), ErrRequestRefused},
		{"an oversize request is not sent", testProto, make([]byte, MaxRequestSize+1), ErrRequestSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Request(ctx, home.ID(), tc.proto, tc.req)
			if !errors.Is(err, tc.want) || resp != nil {
				t.Fatalf("Request = %q, %v; want an error wrapping %v", resp, err, tc.want)
			}
		})
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("handlers ran %d times, want 2 (fail, big)", got)
	}
	if echoCalls.Load() != 0 {
		t.Error("the oversize request reached the handler")
	}
	// The peer is still served after all of that.
	if resp, err := client.Request(ctx, home.ID(), testProto, []byte("ok")); err != nil || string(resp) != "echo:ok" {
		t.Fatalf("honest request after the refusals: %q, %v", resp, err)
	}
	if _, err := client.Request(ctx, NodeID{1}, testProto, nil); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("request to an unknown node: %v", err)
	}
}

// An attacker writing an oversize length prefix, or a truncated message,
// has its stream reset without the handler running.
func TestRequestRejectsBadMessages(t *testing.T) {
	var calls atomic.Int64
	var from atomic.Value
	home := startHost(t, Config{})
	home.Handle(testProto, echoHandler(&calls, &from))
	attacker := startHost(t, Config{})
	if err := attacker.AddPeer(home.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	pid, _ := attacker.peerID(home.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		send   []byte
		result string
	}{
		{"oversize", binary.BigEndian.AppendUint32(nil, MaxRequestSize+1), resultSize},
		{"huge", []byte{0xff, 0xff, 0xff, 0xff}, resultSize},
		{"truncated", append(binary.BigEndian.AppendUint32(nil, 10), "short"...), resultRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(home.m.requestsIn.WithLabelValues(tc.result))
			s, err := attacker.host.NewStream(ctx, pid, protocol.ID(testProto))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Reset()
			if _, err := s.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			_ = s.CloseWrite()
			_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
			if b, err := io.ReadAll(s); err == nil || len(b) > 0 {
				t.Fatalf("stream answered %q, %v; want a reset", b, err)
			}
			eventually(t, 5*time.Second, "refusal counted", func() bool {
				return testutil.ToFloat64(home.m.requestsIn.WithLabelValues(tc.result)) == before+1
			})
		})
	}
	if calls.Load() != 0 {
		t.Fatal("a bad message reached the handler")
	}
}

func TestRequestTimesOut(t *testing.T) {
	release := make(chan struct{})
	home := startHost(t, Config{RequestTimeout: 300 * time.Millisecond})
	home.Handle(testProto, func(NodeID, []byte) ([]byte, error) {
		<-release
		return []byte("late"), nil
	})
	t.Cleanup(func() { close(release) }) // before home closes
	client := startHost(t, Config{RequestTimeout: 500 * time.Millisecond})
	if err := client.AddPeer(home.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	t.Run("a handler that never answers", func(t *testing.T) {
		start := time.Now()
		_, err := client.Request(context.Background(), home.ID(), testProto, []byte("x"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Request returned after %v, RequestTimeout is 500ms", d)
		}
	})
	t.Run("a cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		if _, err := client.Request(ctx, home.ID(), testProto, []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("a requester that never sends", func(t *testing.T) {
		// The home's deadline ends its side: the goroutine serving a
		// silent peer returns and its slot is freed.
		pid, _ := client.peerID(home.ID())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := client.host.NewStream(ctx, pid, protocol.ID(testProto))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Reset()
		_, _ = s.Write([]byte{0}) // start the stream, then nothing
		before := testutil.ToFloat64(home.m.requestsIn.WithLabelValues(resultRefused))
		eventually(t, 10*time.Second, "home gives up on the silent requester", func() bool {
			return testutil.ToFloat64(home.m.requestsIn.WithLabelValues(resultRefused)) == before+1
		})
	})
}

// A peer banned for bad input cannot make requests.
func TestBannedPeerCannotRequest(t *testing.T) {
	var calls atomic.Int64
	var from atomic.Value
	col := newCollector(4)
	home := startHost(t, Config{Handler: col.handle})
	home.Handle(testProto, echoHandler(&calls, &from))
	attacker := startHost(t, Config{RequestTimeout: 2 * time.Second})
	if err := attacker.AddPeer(onlyAddrs(home.PeerInfo(), "/tcp/")); err != nil {
		t.Fatal(err)
	}
	if err := attacker.TrySendVia(home.ID(), NodeID{}, seqPacket(1, testPacketSize)); err != nil {
		t.Fatal(err)
	}
	assertDisconnected(t, home, attacker, reasonFrameSize)
	for range 3 {
		if resp, err := attacker.Request(context.Background(), home.ID(), testProto, []byte("x")); err == nil {
			t.Fatalf("banned peer got an answer %q", resp)
		}
	}
	if calls.Load() != 0 {
		t.Fatal("a banned peer's request reached the handler")
	}
	honest := startHost(t, Config{})
	if err := honest.AddPeer(home.PeerInfo()); err != nil {
		t.Fatal(err)
	}
	if resp, err := honest.Request(context.Background(), home.ID(), testProto, []byte("hi")); err != nil || string(resp) != "echo:hi" {
		t.Fatalf("honest request: %q, %v", resp, err)
	}
}

func TestHandleRejectsForeignProtocols(t *testing.T) {
	h := startHost(t, Config{NoListen: true})
	for _, p := range []string{"/ipfs/ping/1.0.0", "strata/x", ProtocolID} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%q) did not panic", p)
				}
			}()
			h.Handle(p, func(NodeID, []byte) ([]byte, error) { return nil, nil })
		}()
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint32(nil, 3))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 3), "abc"...))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 3), "abcd"...))
	f.Add(binary.BigEndian.AppendUint32(nil, MaxRequestSize+1))
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		body, err := readMessage(bytes.NewReader(in))
		if err != nil {
			if len(in) >= 4 && binary.BigEndian.Uint32(in) > MaxRequestSize && !errors.Is(err, ErrRequestSize) {
				t.Fatalf("oversize prefix gave %v", err)
			}
			return
		}
		n := binary.BigEndian.Uint32(in)
		if n > MaxRequestSize || int(n) != len(body) || !bytes.Equal(body, in[4:4+n]) {
			t.Fatalf("accepted a %d-byte body behind prefix %d", len(body), n)
		}
		// What was read writes back as the same bytes.
		var buf bytes.Buffer
		if err := writeMessage(&buf, body); err != nil || !bytes.Equal(buf.Bytes(), in[:4+n]) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
