package e2e

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func BenchmarkEncrypt5(b *testing.B) {
	ms := newGroup(b, "alice", "bob", "carol", "dave", "erin")
	pt := bytes.Repeat([]byte("x"), 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		if _, err := ms[0].o.g.Encrypt(pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt5(b *testing.B) {
	ms := newGroup(b, "alice", "bob", "carol", "dave", "erin")
	pt := bytes.Repeat([]byte("x"), 256)
	cts := make([][]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		b.StopTimer()
		if len(cts) == 0 {
			for range 1024 {
				ct, err := ms[0].o.g.Encrypt(pt)
				if err != nil {
					b.Fatal(err)
				}
				cts = append(cts, ct)
			}
		}
		ct := cts[0]
		cts = cts[1:]
		b.StartTimer()
		if _, err := ms[1].o.g.Process(ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitProcess5 is one member of a 5-member group processing an
// empty commit (with UpdatePath) from another, through the ordering layer.
func BenchmarkCommitProcess5(b *testing.B) {
	ms := newGroup(b, "alice", "bob", "carol", "dave", "erin")
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		c, _, err := ms[0].o.commit(Intent{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, _, _, err := ms[1].o.receive(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitCreate5 is making (and merging) that commit.
func BenchmarkCommitCreate5(b *testing.B) {
	ms := newGroup(b, "alice", "bob", "carol", "dave", "erin")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ms[0].o.commit(Intent{}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// A Welcome nobody asked for (our key package not in it, or already used)
// is refused by the Manager; with RequireKnownContact, so is one from
// strangers.
func TestUnsolicitedWelcome(t *testing.T) {
	l := &loopback{}
	alice, bob := l.user(t, "alice"), l.user(t, "bob")
	card, err := alice.m.Card(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Mallory builds a group with a key package of her own making.
	mal := newIdentity(t, "mallory")
	g, _ := MLSGo{}.NewGroup(mal, []byte("mallory-room-0001"))
	kp, _ := MLSGo{}.NewKeyPackage(newIdentity(t, "sybil"))
	_, w, err := g.Commit([][]byte{kp.Public}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.m.Handle(context.Background(), wrap(w)); !errors.Is(err, ErrUnsolicited) {
		t.Fatalf("welcome for someone else's key package: %v", err)
	}
	// A Welcome using alice's real key package is accepted once...
	g2, _ := MLSGo{}.NewGroup(mal, []byte("mallory-room-0002"))
	_, w2, err := g2.Commit([][]byte{card.KeyPackages[0]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice.m.cfg.RequireKnownContact = true
	if _, err := alice.m.Handle(context.Background(), wrap(w2)); !errors.Is(err, ErrWelcomeNotAllowed) {
		t.Fatalf("welcome from a stranger: %v", err)
	}
	alice.m.cfg.RequireKnownContact = false
	if _, err := alice.m.Handle(context.Background(), wrap(w2)); err != nil {
		t.Fatal(err)
	}
	// ...and never again: the key package is spent.
	if _, err := alice.m.Handle(context.Background(), wrap(w2)); !errors.Is(err, ErrUnsolicited) {
		t.Fatalf("replayed welcome: %v", err)
	}
	_ = bob
	if len(alice.m.Rooms()) != 1 {
		t.Fatalf("%d rooms", len(alice.m.Rooms()))
	}
}
