package sphinx

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/cloudflare/circl/dh/x25519"
)

// unwrapArrival is a valid packet as it arrives at one hop of its path, and
// what that hop's Unwrap makes of it.
type unwrapArrival struct {
	path   []testNode // this hop, then the rest of the path
	pkt    []byte     // the packet as it arrives
	secret [32]byte   // this hop's shared secret with the packet's α
	res    Result     // Unwrap's result on pkt (Payload copied)
	out    []byte     // pkt after Unwrap
	final  CommandKind
}

// unwrapArrivals builds valid packets of every command kind over paths of 1
// to 5 hops, forward packets and SURB replies, and returns every hop's
// arrival: Forward hops of every depth and every final kind.
func unwrapArrivals(f *testing.F) (*Format, []unwrapArrival) {
	ff := testFormat(f)
	rnd := testRand(40)
	nodes := testNodes(f, rnd, ff.Geometry().MaxHops)
	full := make([]byte, ff.Geometry().PayloadCapacity())
	rnd.Read(full)
	var pkts [][]byte
	var paths [][]testNode
	add := func(n int, final Command, msg []byte) {
		pkt, _, err := ff.NewPacket(rnd, pathOf(nodes[:n]), final, testDelay, msg)
		if err != nil {
			f.Fatal(err)
		}
		pkts, paths = append(pkts, pkt), append(paths, nodes[:n])
	}
	addReply := func(n int) {
		surb, _, _, err := ff.NewSURB(rnd, pathOf(nodes[:n]), DeliveryToken{9}, testDelay)
		if err != nil {
			f.Fatal(err)
		}
		pkt, err := ff.NewReply(surb, []byte("fuzz reply"))
		if err != nil {
			f.Fatal(err)
		}
		pkts, paths = append(pkts, pkt), append(paths, nodes[:n])
	}
	add(1, DeliverToMailbox(), []byte("seed"))
	add(1, DropCover(), nil)
	add(1, LoopBack(LoopID{1}), []byte("loop"))
	addReply(1)
	add(2, DeliverToMailbox(), full)
	add(3, LoopBack(LoopID{2}), []byte("loop"))
	addReply(4)
	add(5, DropCover(), nil)
	add(5, DeliverToMailbox(), []byte("five hops"))

	var arrivals []unwrapArrival
	for k, pkt := range pkts {
		path := paths[k]
		start := len(arrivals)
		for i, n := range path {
			a := unwrapArrival{path: path[i:], pkt: bytes.Clone(pkt)}
			if !x25519.Shared((*x25519.Key)(&a.secret), (*x25519.Key)(n.priv), (*x25519.Key)(pkt[:GroupElementSize])) {
				f.Fatal("small-order α in a valid packet")
			}
			if err := ff.Unwrap(n.priv, testDelay, pkt, &a.res); err != nil {
				f.Fatalf("packet %d hop %d: %v", k, i, err)
			}
			a.res.Payload = bytes.Clone(a.res.Payload)
			a.out = bytes.Clone(pkt)
			arrivals = append(arrivals, a)
		}
		for i := start; i < len(arrivals); i++ {
			arrivals[i].final = arrivals[len(arrivals)-1].res.Command.Kind
		}
	}
	return ff, arrivals
}

// checkUnwrapError fails t unless err is nil or wraps one of the errors
// Unwrap documents.
func checkUnwrapError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, e := range []error{ErrPacketSize, ErrGroupElement, ErrMAC, ErrCommand, ErrPayloadTag} {
		if errors.Is(err, e) {
			return
		}
	}
	t.Fatalf("undocumented error %v", err)
}

// checkResult fails t unless res is consistent with its command: a valid
// command, a delay within the cap only for Forward, and a payload of the
// documented size aliasing pkt.
func checkResult(t *testing.T, f *Format, res *Result, pkt []byte) {
	t.Helper()
	g := f.g
	if err := res.Command.validate(); err != nil {
		t.Fatalf("accepted invalid command %v: %v", res.Command, err)
	}
	if res.Command.Kind != Forward && res.Delay != 0 {
		t.Fatalf("%v with delay %v", res.Command.Kind, res.Delay)
	}
	if res.Delay < 0 || res.Delay > DefaultDelayCap*testDelay.Mean {
		t.Fatalf("delay %v outside [0, cap]", res.Delay)
	}
	want := map[CommandKind]int{Forward: 0, Drop: 0, DeliverClient: g.PayloadSize, DeliverMailbox: g.PayloadCapacity(), Loop: g.PayloadCapacity()}[res.Command.Kind]
	if len(res.Payload) != want {
		t.Fatalf("%v: payload of %d bytes, want %d", res.Command.Kind, len(res.Payload), want)
	}
	if want > 0 && &res.Payload[len(res.Payload)-1] != &pkt[len(pkt)-1] {
		t.Fatal("payload does not alias the packet's end")
	}
}

// xorInto XORs mask into b, as far as b reaches.
func xorInto(b, mask []byte) {
	for i := range min(len(b), len(mask)) {
		b[i] ^= mask[i]
	}
}

// FuzzUnwrap reaches the code behind the header MAC: it takes a valid packet
// as it arrives at some hop (paths of 1–5 hops, every command kind, forward
// packets and SURB replies), XORs fuzzer-chosen masks into α, β and the
// payload, and, when remac is set, recomputes γ with the hop's MAC key, so
// that the changed routing information is authentic and Unwrap decodes it.
// It then checks, besides "no panic, only documented errors":
//   - the outcome the format prescribes: ErrGroupElement exactly for a
//     small-order α, ErrMAC exactly when γ does not match, ErrCommand exactly
//     when the decrypted slot holds an invalid command, otherwise the slot's
//     command, the replay tag and delay of the hop's shared secret, and
//     ErrPayloadTag at a destination exactly when the payload or secret
//     changed (or the destination was not the packet's);
//   - a packet refused before decryption is unchanged; an unmodified one, or
//     one whose α changed without changing the shared secret, gives the
//     recorded result (and next packet) byte for byte;
//   - a Forward result is unwrapped on along the rest of the path, where a
//     payload changed on the way is still caught at the destination.
func FuzzUnwrap(f *testing.F) {
	ff, arrivals := unwrapArrivals(f)
	for i, a := range arrivals {
		w := uint8(i)
		f.Add(w, bytes.Clone(a.pkt[:GroupElementSize]), []byte{}, []byte{}, uint16(0), true) // α = 0, small order
		f.Add(w, []byte{}, []byte{}, []byte{}, uint16(0), false)
		f.Add(w, []byte{}, []byte{0x07}, []byte{}, uint16(0), true)                    // command kind
		f.Add(w, []byte{}, []byte{0, 0, 0, 1}, []byte{}, uint16(0), true)              // command argument
		f.Add(w, []byte{}, []byte{}, []byte{0x80}, uint16(100*i), false)               // payload
		f.Add(w, []byte{0, 0, 0, 0, 1}, []byte{}, []byte{}, uint16(0), true)           // α
		f.Add(w, []byte{}, bytes.Repeat([]byte{0xff}, 60), []byte{}, uint16(0), false) // β without a new MAC
		f.Add(w, append(make([]byte, 31), 0x80), []byte{}, []byte{}, uint16(0), false) // α's bit 255
	}
	g := ff.Geometry()
	B := g.RoutingSize()
	f.Fuzz(func(t *testing.T, which uint8, alphaX, betaX, payloadX []byte, payloadAt uint16, remac bool) {
		a := arrivals[int(which)%len(arrivals)]
		pkt := bytes.Clone(a.pkt)
		alpha := pkt[:GroupElementSize]
		beta := pkt[GroupElementSize : GroupElementSize+B]
		gamma := pkt[GroupElementSize+B : g.HeaderSize()]
		payload := pkt[g.HeaderSize():]
		xorInto(alpha, alphaX)
		xorInto(beta, betaX)
		xorInto(payload[int(payloadAt)%len(payload):], payloadX)

		// The hop's view, computed here with the package's key schedule.
		var secret [32]byte
		var keys hopKeys
		var sum [sha256.Size]byte
		okAlpha := x25519.Shared((*x25519.Key)(&secret), (*x25519.Key)(a.path[0].priv), (*x25519.Key)(alpha))
		macOK := false
		if okAlpha {
			deriveHopKeys(&secret, &keys)
			headerMAC(newHash(), &keys.mac, beta, &sum)
			if remac {
				copy(gamma, sum[:MACSize])
			}
			macOK = bytes.Equal(gamma, sum[:MACSize])
		}
		betaSame := bytes.Equal(pkt[GroupElementSize:g.HeaderSize()], a.pkt[GroupElementSize:g.HeaderSize()])
		payloadSame := bytes.Equal(payload, a.pkt[g.HeaderSize():])
		headerSame := bytes.Equal(pkt[:g.HeaderSize()], a.pkt[:g.HeaderSize()])

		in := bytes.Clone(pkt)
		var res Result
		err := ff.Unwrap(a.path[0].priv, testDelay, pkt, &res)
		checkUnwrapError(t, err)
		switch {
		case !okAlpha:
			if !errors.Is(err, ErrGroupElement) {
				t.Fatalf("small-order α: %v, want ErrGroupElement", err)
			}
		case !macOK:
			if !errors.Is(err, ErrMAC) {
				t.Fatalf("MAC mismatch: %v, want ErrMAC", err)
			}
		}
		if errors.Is(err, ErrGroupElement) || errors.Is(err, ErrMAC) {
			if okAlpha && macOK {
				t.Fatalf("valid α and MAC refused: %v", err)
			}
			if !bytes.Equal(in, pkt) {
				t.Fatal("a rejected packet was modified")
			}
			return
		}

		// Behind the MAC: the slot decodes as the hop's key stream says.
		stream := make([]byte, RoutingInfoSize)
		keyStream(&keys.header, stream)
		var slot Command
		subtleXOR(stream, stream, in[GroupElementSize:GroupElementSize+RoutingInfoSize]) // β as it arrived
		slotErr := slot.decode(stream[:CommandSize])
		if slotErr != nil {
			if !errors.Is(err, ErrCommand) {
				t.Fatalf("slot %x holds an invalid command (%v): Unwrap says %v", stream[:CommandSize], slotErr, err)
			}
			return
		}
		if errors.Is(err, ErrCommand) {
			t.Fatalf("valid command %v refused: %v", slot, err)
		}
		if res.Command != slot {
			t.Fatalf("decoded %v, the slot holds %v", res.Command, slot)
		}
		if res.ReplayTag != keys.replay {
			t.Fatal("replay tag is not the hop secret's")
		}
		if slot.Kind == Forward && res.Delay != testDelay.Sample(keys.delay) {
			t.Fatalf("delay %v is not the hop secret's", res.Delay)
		}
		secretSame := secret == a.secret
		destination := slot.Kind == DeliverMailbox || slot.Kind == Loop
		intact := payloadSame && secretSame && a.res.Command.Kind.Final() && a.res.Command.Kind != DeliverClient
		switch {
		case destination && !intact:
			if !errors.Is(err, ErrPayloadTag) {
				t.Fatalf("%v with a changed payload or secret: %v, want ErrPayloadTag", slot.Kind, err)
			}
			return
		case err != nil:
			t.Fatalf("%v: %v", slot, err)
		}
		checkResult(t, ff, &res, pkt)
		if secretSame && betaSame && payloadSame {
			// Unmodified, or α changed only in ways that keep the
			// shared secret (bit 255, a small-order component): the
			// same result, and for Forward the same next packet.
			if res.Command != a.res.Command || res.Delay != a.res.Delay || !bytes.Equal(res.Payload, a.res.Payload) {
				t.Fatal("equivalent packet: result differs from the recorded one")
			}
			if res.Command.Kind == Forward && !bytes.Equal(pkt, a.out) {
				t.Fatal("equivalent packet: next packet differs from the recorded one")
			}
		}
		if destination && (a.res.Command.Kind == DeliverMailbox || a.res.Command.Kind == Loop) && !bytes.Equal(res.Payload, a.res.Payload) {
			t.Fatal("intact payload decrypted differently")
		}

		// Unwrap on along the path while the packet is forwarded to it.
		for i := 1; res.Command.Kind == Forward && i < len(a.path) && res.Command.NextHop() == a.path[i].id; i++ {
			err := ff.Unwrap(a.path[i].priv, testDelay, pkt, &res)
			checkUnwrapError(t, err)
			if err != nil {
				if headerSame && !errors.Is(err, ErrPayloadTag) {
					t.Fatalf("hop +%d of an authentic header: %v", i, err)
				}
				if headerSame && errors.Is(err, ErrPayloadTag) && payloadSame {
					t.Fatalf("hop +%d: intact packet refused: %v", i, err)
				}
				return
			}
			checkResult(t, ff, &res, pkt)
		}
		if headerSame && !payloadSame && (a.final == DeliverMailbox || a.final == Loop) {
			t.Fatalf("payload changed at hop %d reached its %v destination undetected", len(a.path)-1, a.final)
		}
	})
}
