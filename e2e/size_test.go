package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestMaxPayload checks that an invite or message too large for the
// transport is refused before anything is stored or sent, and that the room
// (and the contact's one key package) stay usable.
func TestMaxPayload(t *testing.T) {
	ctx := context.Background()
	l := &loopback{}
	var us []*tuser
	for _, n := range []string{"alice", "bob", "carol", "dave", "erin"} {
		us = append(us, l.user(t, n))
	}
	owner := us[0]
	owner.m.cfg.MaxPayload = 1639 // mailbox.MaxPut with the default geometry (wire v2, room for a work nonce)
	id, err := owner.m.CreateRoom("big")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us[1:] {
		card, err := u.m.Card(1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := owner.m.ImportContact(card); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range us[1:4] {
		if err := owner.m.Invite(ctx, id, u.key()); err != nil {
			t.Fatalf("invite %s: %v", u.name, err)
		}
		l.pump(t)
	}
	before, _ := owner.m.Room(id)
	sent := len(l.queue)
	err = owner.m.Invite(ctx, id, us[4].key())
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("fifth invite: %v, want ErrTooLarge", err)
	}
	after, _ := owner.m.Room(id)
	if after.Epoch != before.Epoch || len(after.Members) != 4 || len(l.queue) != sent {
		t.Fatalf("refused invite changed the room: epoch %d→%d, %d members, %d deliveries", before.Epoch, after.Epoch, len(after.Members), len(l.queue)-sent)
	}
	if err := owner.m.Send(ctx, id, strings.Repeat("x", 2000)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("long message: %v, want ErrTooLarge", err)
	}
	if h, _ := owner.m.History(id); len(h) != 0 {
		t.Fatalf("refused message in history: %+v", h)
	}
	if err := owner.m.Send(ctx, id, "still fine"); err != nil {
		t.Fatal(err)
	}
	l.pump(t)
	for _, u := range us[1:4] {
		if got := lastText(t, u, id); got != "still fine" {
			t.Errorf("%s read %q", u.name, got)
		}
	}
	// Without the limit the same invite goes through: the key package was
	// not used up by the refused one.
	owner.m.cfg.MaxPayload = 0
	if err := owner.m.Invite(ctx, id, us[4].key()); err != nil {
		t.Fatalf("invite after the refusal: %v", err)
	}
	l.pump(t)
	if ri, err := us[4].m.Room(id); err != nil || len(ri.Members) != 5 {
		t.Fatalf("erin: %v %+v", err, ri)
	}
}
