package sphinx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/cloudflare/circl/dh/x25519"
)

// hopSecrets is what hop i of a path derives from its shared secret, as the
// hop itself computes it.
type hopSecrets struct {
	secret [32]byte
	prk    [32]byte
	keys   hopKeys
}

// replyPathSecrets walks a reply through nodes and returns every hop's
// secrets, computed from the hop's private key and the α it receives, and the
// payload the last hop delivers. It checks that the secrets are the ones
// Unwrap uses (same replay tag, same delay), so that searching for them
// below searches for the real thing.
func replyPathSecrets(t *testing.T, f *Format, nodes []testNode, pkt []byte) ([]hopSecrets, []byte) {
	t.Helper()
	out := make([]hopSecrets, len(nodes))
	var res Result
	for i, n := range nodes {
		hs := &out[i]
		if !x25519.Shared((*x25519.Key)(&hs.secret), (*x25519.Key)(n.priv), (*x25519.Key)(pkt[:GroupElementSize])) {
			t.Fatalf("hop %d: small-order α", i)
		}
		hs.prk = hopPRK(&hs.secret)
		expandHopKeys(&hs.prk, &hs.keys)
		if err := f.Unwrap(n.priv, testDelay, pkt, &res); err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		if res.ReplayTag != hs.keys.replay {
			t.Fatalf("hop %d: derived replay tag differs from Unwrap's", i)
		}
		if res.Command.Kind == Forward && res.Delay != testDelay.Sample(hs.keys.delay) {
			t.Fatalf("hop %d: derived delay differs from Unwrap's", i)
		}
	}
	return out, res.Payload
}

// containsAnyPart reports whether b holds any aligned 8-byte quarter of
// secret: a leak of part of a key is found too, while a chance match of 8
// given bytes in a 690-byte record has probability below 2⁻⁵⁴.
func containsAnyPart(b []byte, secret []byte) bool {
	for j := 0; j+8 <= len(secret); j += 8 {
		if bytes.Contains(b, secret[j:j+8]) {
			return true
		}
	}
	return false
}

// formatOneReplyKeys encodes keys as the unversioned format 1 did (ID ‖ hops
// ‖ key ‖ every hop's prk), from the hops' prks.
func formatOneReplyKeys(id SURBID, key [SURBKeySize]byte, hops []hopSecrets) []byte {
	b := append(id[:], byte(len(hops)))
	b = append(b, key[:]...)
	for _, h := range hops {
		b = append(b, h.prk[:]...)
	}
	return b
}

// TestReplyKeysHoldOnlyPayloadKeys shows that stored reply keys hold none of
// the material a stolen disk could use to rebuild a reply path's headers,
// replay tags or delays — no hop's shared secret, prk, header key, MAC key,
// blinding scalar, replay tag or delay word, not even a quarter of one —
// while they do hold every hop's payload keys, and still open the reply.
func TestReplyKeysHoldOnlyPayloadKeys(t *testing.T) {
	f := testFormat(t)
	rnd := testRand(50)
	for hops := 1; hops <= f.Geometry().MaxHops; hops++ {
		t.Run(fmt.Sprintf("%d hops", hops), func(t *testing.T) {
			nodes := testNodes(t, rnd, hops)
			surb, keys, _, err := f.NewSURB(rnd, pathOf(nodes), DeliveryToken{7}, testDelay)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := keys.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(enc) != surbKeysSize(hops) {
				t.Fatalf("%d bytes, want %d", len(enc), surbKeysSize(hops))
			}
			msg := []byte("reply to a stolen-disk test")
			pkt, err := f.NewReply(surb, msg)
			if err != nil {
				t.Fatal(err)
			}
			secrets, delivered := replyPathSecrets(t, f, nodes, pkt)

			// The search can find a leak: the format-1 record of the
			// same SURB holds every prk, and is refused.
			old := formatOneReplyKeys(keys.ID, keys.key, secrets)
			if !containsAnyPart(old, secrets[hops-1].prk[:]) {
				t.Fatal("search does not find a prk in a record that holds it")
			}
			var k ReplyKeys
			if err := k.UnmarshalBinary(old); !errors.Is(err, ErrReplyKeysVersion) || !errors.Is(err, ErrSURB) {
				t.Fatalf("format-1 record: %v, want ErrReplyKeysVersion and ErrSURB", err)
			}

			for i, s := range secrets {
				var delayWord [8]byte
				binary.LittleEndian.PutUint64(delayWord[:], s.keys.delay)
				for name, v := range map[string][]byte{
					"shared secret": s.secret[:], "prk": s.prk[:], "header key": s.keys.header[:],
					"MAC key": s.keys.mac[:], "blinding scalar": s.keys.blind[:],
					"replay tag": s.keys.replay[:], "delay word": delayWord[:],
				} {
					if containsAnyPart(enc, v) {
						t.Errorf("hop %d: encoded reply keys hold part of the hop's %s", i, name)
					}
				}
				for j, lk := range s.keys.lioness {
					if !bytes.Contains(enc, lk[:]) {
						t.Errorf("hop %d: Lioness key K%d missing from the reply keys", i, j+1)
					}
				}
			}

			if err := k.UnmarshalBinary(enc); err != nil {
				t.Fatal(err)
			}
			got, err := f.OpenReply(&k, delivered)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "reply", got, padded(msg, f.Geometry().PayloadCapacity()))
		})
	}
}

// TestReplyKeysDecodeStrictly checks that UnmarshalBinary accepts exactly
// the format-2 encodings of 1 to MaxHopsLimit hops, refuses other formats
// with ErrReplyKeysVersion (any first byte but 2, at any length, as
// docs/sphinx.md says), and leaves its receiver untouched on error.
func TestReplyKeysDecodeStrictly(t *testing.T) {
	f := testFormat(t)
	rnd := testRand(51)
	nodes := testNodes(t, rnd, 3)
	_, keys, _, err := f.NewSURB(rnd, pathOf(nodes), DeliveryToken{}, testDelay)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := keys.MarshalBinary()
	if good[0] != ReplyKeysVersion || good[1+SURBIDSize] != 3 {
		t.Fatalf("encoding opens %x, want version %d and 3 hops", good[:1+SURBIDSize+1], ReplyKeysVersion)
	}
	mod := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good)) }
	formatOne := append(keys.ID[:], 3)
	formatOne = append(formatOne, make([]byte, SURBKeySize+3*32)...)
	for _, c := range []struct {
		name    string
		b       []byte
		version bool // must also wrap ErrReplyKeysVersion
	}{
		{"empty", nil, false},
		{"one byte", []byte{ReplyKeysVersion}, false},
		{"one byte of format 3", []byte{3}, true},
		{"short record of format 1", append([]byte{1}, make([]byte, 99)...), true},
		{"short record of format 0xff", append([]byte{0xff}, good[1:100]...), true},
		{"format 1, 3 hops", formatOne, true},
		{"format 1, 16 hops", mod(func([]byte) []byte { b := make([]byte, surbKeysSizeV1(16)); b[SURBIDSize] = 16; return b }), true},
		{"format 1 size, hop byte 0", make([]byte, surbKeysSizeV1(16)), true}, // format byte 0
		{"version 1", mod(func(b []byte) []byte { b[0] = 1; return b }), true},
		{"version 3", mod(func(b []byte) []byte { b[0] = 3; return b }), true},
		{"version 0", mod(func(b []byte) []byte { b[0] = 0; return b }), true},
		{"truncated", good[:len(good)-1], false},
		{"one layer short", good[:len(good)-4*lionessKeySize], false},
		{"trailing byte", append(bytes.Clone(good), 0), false},
		{"zero hops", mod(func(b []byte) []byte { b[1+SURBIDSize] = 0; return b }), false},
		{"hop count 2 for 3 layers", mod(func(b []byte) []byte { b[1+SURBIDSize] = 2; return b }), false},
		{"17 hops", append([]byte{ReplyKeysVersion}, make([]byte, surbKeysSize(17)-1)...), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "17 hops" {
				c.b[1+SURBIDSize] = 17
			}
			k := *keys
			err := k.UnmarshalBinary(c.b)
			if !errors.Is(err, ErrSURB) {
				t.Fatalf("%d bytes: %v, want ErrSURB", len(c.b), err)
			}
			if c.version != errors.Is(err, ErrReplyKeysVersion) {
				t.Fatalf("%v: ErrReplyKeysVersion %v, want %v", err, !c.version, c.version)
			}
			if again, _ := k.MarshalBinary(); !bytes.Equal(again, good) {
				t.Fatal("a refused record changed the keys")
			}
		})
	}
	var k ReplyKeys
	if err := k.UnmarshalBinary(good); err != nil {
		t.Fatal(err)
	}
	if again, _ := k.MarshalBinary(); !bytes.Equal(again, good) {
		t.Fatal("reply keys do not round-trip")
	}
	if _, err := new(ReplyKeys).MarshalBinary(); !errors.Is(err, ErrSURB) {
		t.Fatalf("encoding empty reply keys: %v, want ErrSURB", err)
	}
}
