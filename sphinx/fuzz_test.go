package sphinx

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzUnwrapBytes feeds Unwrap arbitrary bytes, wrong lengths and arbitrary
// α included: it must return a documented error or a consistent result, never
// panic. Almost every input stops at the MAC; FuzzUnwrap reaches behind it.
func FuzzUnwrapBytes(f *testing.F) {
	ff, arrivals := unwrapArrivals(f)
	for _, a := range arrivals[:4] {
		f.Add(a.pkt)
	}
	f.Add([]byte{})
	f.Add(make([]byte, ff.Geometry().PacketSize()))
	node := arrivals[0].path[0]
	f.Fuzz(func(t *testing.T, pkt []byte) {
		in := bytes.Clone(pkt)
		var res Result
		err := ff.Unwrap(node.priv, testDelay, pkt, &res)
		checkUnwrapError(t, err)
		switch {
		case errors.Is(err, ErrPacketSize), errors.Is(err, ErrGroupElement), errors.Is(err, ErrMAC):
			if !bytes.Equal(in, pkt) {
				t.Fatal("a rejected packet was modified")
			}
		case err == nil:
			checkResult(t, ff, &res, pkt)
		}
	})
}

// FuzzCommand checks that commands decode strictly and round-trip.
func FuzzCommand(f *testing.F) {
	for _, c := range []Command{ForwardTo(NodeID{1}), DeliverToMailbox(), DeliverToClient(DeliveryToken{2}, SURBID{3}), DropCover(), LoopBack(LoopID{4})} {
		b, _ := c.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{9})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Command
		if err := c.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrCommand) {
				t.Fatalf("error %v does not wrap ErrCommand", err)
			}
			return
		}
		out, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("command %v re-encodes as %x (%v), decoded from %x", c, out, err, b)
		}
		_ = c.String()
	})
}

// FuzzDecodeSURB checks that any SURB bytes decode or fail cleanly, and that
// replying with a decoded SURB never panics.
func FuzzDecodeSURB(f *testing.F) {
	ff := testFormat(f)
	rnd := testRand(41)
	nodes := testNodes(f, rnd, 3)
	surb, _, _, err := ff.NewSURB(rnd, pathOf(nodes), DeliveryToken{}, testDelay)
	if err != nil {
		f.Fatal(err)
	}
	b, _ := surb.MarshalBinary()
	f.Add(b)
	f.Add(b[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ff.DecodeSURB(b)
		if err != nil {
			if !errors.Is(err, ErrSURB) {
				t.Fatalf("error %v does not wrap ErrSURB", err)
			}
			return
		}
		out, _ := s.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("SURB does not round-trip")
		}
		if _, err := ff.NewReply(s, []byte("reply")); err != nil {
			t.Fatalf("reply with a decoded SURB: %v", err)
		}
	})
}

// FuzzReplyKeys checks the stored reply-key decoder: it accepts only format
// ReplyKeysVersion of the exact size, refuses the unversioned format 1 with
// ErrReplyKeysVersion, round-trips what it accepts, and opening any payload
// with decoded keys fails cleanly (the valid keys still open their reply).
func FuzzReplyKeys(f *testing.F) {
	ff := testFormat(f)
	rnd := testRand(42)
	nodes := testNodes(f, rnd, 4)
	surb, keys, _, err := ff.NewSURB(rnd, pathOf(nodes), DeliveryToken{}, testDelay)
	if err != nil {
		f.Fatal(err)
	}
	msg := []byte("fuzzed reply")
	pkt, _ := ff.NewReply(surb, msg)
	var res Result
	for _, n := range nodes {
		if err := ff.Unwrap(n.priv, testDelay, pkt, &res); err != nil {
			f.Fatal(err)
		}
	}
	delivered := bytes.Clone(res.Payload)
	good, _ := keys.MarshalBinary()
	formatOne := append(keys.ID[:], 4)
	formatOne = append(formatOne, randomBytes(rnd, SURBKeySize+4*32)...)
	f.Add(good, delivered)
	f.Add(good, []byte("payload"))
	f.Add(formatOne, delivered)
	f.Add(good[:20], []byte{})
	f.Add(append([]byte{1}, good[1:]...), delivered)
	f.Fuzz(func(t *testing.T, b, payload []byte) {
		var k ReplyKeys
		if err := k.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrSURB) {
				t.Fatalf("error %v does not wrap ErrSURB", err)
			}
			if errors.Is(err, ErrReplyKeysVersion) && len(b) > 0 && b[0] == ReplyKeysVersion && len(b)%2 == 0 {
				t.Fatalf("format-%d record of %d bytes refused as another format: %v", b[0], len(b), err)
			}
			if len(b) > 0 && b[0] != ReplyKeysVersion && !errors.Is(err, ErrReplyKeysVersion) {
				t.Fatalf("record of format %d (%d bytes) refused without ErrReplyKeysVersion: %v", b[0], len(b), err)
			}
			return
		}
		if b[0] != ReplyKeysVersion || len(b) != surbKeysSize(k.Hops()) || len(b)%2 != 0 {
			t.Fatalf("accepted %d bytes of format %d for %d hops", len(b), b[0], k.Hops())
		}
		out, _ := k.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatal("reply keys do not round-trip")
		}
		p := bytes.Clone(payload)
		got, err := ff.OpenReply(&k, p)
		switch {
		case len(payload) != ff.Geometry().PayloadSize:
			if !errors.Is(err, ErrPayloadSize) {
				t.Fatalf("payload of %d bytes: %v, want ErrPayloadSize", len(payload), err)
			}
		case k.Hops() > ff.Geometry().MaxHops:
			if !errors.Is(err, ErrSURB) {
				t.Fatalf("keys for %d hops: %v, want ErrSURB", k.Hops(), err)
			}
		case bytes.Equal(b, good) && bytes.Equal(payload, delivered):
			if err != nil || !bytes.Equal(got, padded(msg, ff.Geometry().PayloadCapacity())) {
				t.Fatalf("the SURB's own keys do not open its reply: %v", err)
			}
		case err != nil && !errors.Is(err, ErrPayloadTag):
			t.Fatalf("open: %v, want nil or ErrPayloadTag", err)
		}
	})
}

// FuzzUnwrapCommands builds correctly MACed packets whose final slot holds
// arbitrary command bytes, reaching the decoder behind the MAC.
func FuzzUnwrapCommands(f *testing.F) {
	ff := testFormat(f)
	rnd := testRand(43)
	nodes := testNodes(f, rnd, 2)
	st, err := ff.pathKeys(rnd, pathOf(nodes))
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range []Command{DeliverToMailbox(), DropCover(), {Kind: 7}} {
		b, _ := c.MarshalBinary()
		f.Add(b, uint16(0))
	}
	f.Fuzz(func(t *testing.T, raw []byte, flip uint16) {
		if len(raw) < CommandSize {
			return
		}
		var cmd Command
		cmd.Kind = CommandKind(raw[0])
		copy(cmd.Arg[:], raw[1:CommandSize])
		pkt := make([]byte, ff.Geometry().PacketSize())
		ff.buildHeader(newHash(), st, pathOf(nodes), cmd, pkt[:ff.Geometry().HeaderSize()])
		var res Result
		if err := ff.Unwrap(nodes[0].priv, testDelay, pkt, &res); err != nil {
			t.Fatalf("first hop: %v", err)
		}
		pkt[ff.Geometry().HeaderSize()+int(flip)%ff.Geometry().PayloadSize] ^= byte(flip >> 8)
		err := ff.Unwrap(nodes[1].priv, testDelay, pkt, &res)
		valid := cmd.validate() == nil && cmd.Kind.Final()
		switch {
		case !valid && cmd.Kind != Forward:
			if !errors.Is(err, ErrCommand) {
				t.Fatalf("command %x: %v, want ErrCommand", raw[:CommandSize], err)
			}
		case err != nil && !errors.Is(err, ErrPayloadTag):
			t.Fatalf("command %v: %v", cmd, err)
		case err == nil && res.Command != cmd && cmd.Kind != Forward:
			t.Fatalf("decoded %v, built %v", res.Command, cmd)
		}
	})
}
