package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// FuzzParsePush: any frame either parses, re-encoding to itself, or is an
// error; never a panic.
func FuzzParsePush(f *testing.F) {
	g := sphinx.DefaultGeometry()
	good := make([]byte, g.PacketSize())
	if err := EncodePush(g, good, sphinx.SURBID{1}, pattern(g.PayloadSize, 5)); err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:100])
	f.Add([]byte{})
	bad := bytes.Clone(good)
	bad[len(bad)-1] = 7
	f.Add(bad)
	f.Fuzz(func(t *testing.T, frame []byte) {
		id, payload, err := ParsePush(g, frame)
		if err != nil {
			return
		}
		out := make([]byte, g.PacketSize())
		if err := EncodePush(g, out, id, payload); err != nil || !bytes.Equal(out, frame) {
			t.Fatalf("parsed frame does not re-encode: %v", err)
		}
	})
}

// FuzzUnpad: Unpad accepts exactly the messages whose length prefix fits,
// and Pad of the result gives back the message when its padding is zero.
func FuzzUnpad(f *testing.F) {
	f.Add(Pad(64, []byte("hello")))
	f.Add([]byte{0xff, 0xff, 1})
	f.Add([]byte{0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		p, err := Unpad(msg)
		if err != nil {
			return
		}
		if len(p) > len(msg)-lengthPrefix {
			t.Fatalf("payload of %d bytes from a %d-byte message", len(p), len(msg))
		}
		re := Pad(len(msg), p)
		if !bytes.Equal(re[:lengthPrefix+len(p)], msg[:lengthPrefix+len(p)]) {
			t.Fatal("Pad does not give back the prefix and payload")
		}
	})
}

// FuzzParseRegister: any bytes either parse as a registration request that
// re-encodes to themselves, or are an error wrapping ErrRegister.
func FuzzParseRegister(f *testing.F) {
	f.Add(EncodeRegister(sphinx.NodeID{1}, HomeSecret{2}))
	f.Add(EncodeRegister(sphinx.NodeID{1}, HomeSecret{}))
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		home, s, err := ParseRegister(b)
		if err != nil {
			if !errors.Is(err, ErrRegister) {
				t.Fatalf("error %v does not wrap ErrRegister", err)
			}
			return
		}
		if !bytes.Equal(EncodeRegister(home, s), b) {
			t.Fatal("parsed request does not re-encode")
		}
	})
}

// FuzzViaSURB: any bytes either decode as a SURB destination or are an
// error.
func FuzzViaSURB(f *testing.F) {
	f.Add(make([]byte, sphinx.DefaultGeometry().SURBSize()))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ViaSURB(b)
		if err == nil && (d.surb == nil || len(b) != sphinx.DefaultGeometry().SURBSize()) {
			t.Fatalf("accepted %d bytes", len(b))
		}
	})
}

// FuzzHandle feeds frames "from the home relay" to a client's receive path
// (the SURB database is real): nothing panics, and nothing but a genuine
// reply to one of its SURBs is delivered.
func FuzzHandle(f *testing.F) {
	format, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		f.Fatal(err)
	}
	g := format.Geometry()
	store, err := OpenSURBStore(filepath.Join(f.TempDir(), "surbs.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	key, err := transport.GenerateIdentity()
	if err != nil {
		f.Fatal(err)
	}
	home := transport.PeerInfo{PublicKey: key.Public().(ed25519.PublicKey)}
	homeID := transport.NodeIDFromPublicKey(home.PublicKey)
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	c := &Client{format: format, store: store, m: newMetrics(nil), log: slog.New(slog.DiscardHandler), recv: make(chan Reply, 1), loops: map[sphinx.SURBID]pendingLoop{}, ctx: ctx}
	c.home.Store(&homeState{info: home, id: sphinx.NodeID(homeID)})

	// A genuine reply as a seed: a SURB to a one-hop path, and the reply
	// payload the home would push.
	mix, pub, err := sphinx.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	surb, keys, _, err := format.NewSURB(rand.Reader, []sphinx.Hop{{ID: sphinx.NodeID{1}, Key: pub}}, sphinx.DeliveryToken{2}, sphinx.DelayPolicy{})
	if err != nil {
		f.Fatal(err)
	}
	if err := store.Put(1, keys); err != nil {
		f.Fatal(err)
	}
	pkt, err := format.NewReply(surb, Pad(g.PayloadCapacity(), []byte("seed reply")))
	if err != nil {
		f.Fatal(err)
	}
	var res sphinx.Result
	if err := format.Unwrap(mix, sphinx.DelayPolicy{}, pkt, &res); err != nil {
		f.Fatal(err)
	}
	good := make([]byte, g.PacketSize())
	if err := EncodePush(g, good, keys.ID, res.Payload); err != nil {
		f.Fatal(err)
	}
	// The seed is genuine: the client opens it.
	c.handle(homeID, bytes.Clone(good))
	select {
	case r := <-c.recv:
		if string(r.Payload) != "seed reply" {
			f.Fatalf("seed reply %q", r.Payload)
		}
	default:
		f.Fatalf("the seed reply was not delivered: %+v", c.m.snapshot())
	}
	store.settle()
	if err := store.Put(1, keys); err != nil {
		f.Fatal(err)
	}
	f.Add(good, true)
	f.Add(good, false)
	f.Add(make([]byte, g.PacketSize()), true)
	f.Add([]byte("x"), true)
	f.Fuzz(func(t *testing.T, frame []byte, fromHome bool) {
		from := homeID
		if !fromHome {
			from = transport.NodeID{3}
		}
		c.handle(from, frame)
		select {
		case r := <-c.recv:
			if r.SURB != keys.ID || string(r.Payload) != "seed reply" {
				t.Fatalf("delivered %x %q", r.SURB, r.Payload)
			}
			// Put the keys back for the next input.
			store.settle()
			if err := store.Put(1, keys); err != nil {
				t.Fatal(err)
			}
		default:
		}
	})
}
