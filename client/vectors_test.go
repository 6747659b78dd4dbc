package client

import (
	"bytes"
	"encoding/hex"
	"flag"
	"path/filepath"
	"testing"

	"github.com/strata-mix/strata/internal/testvec"
	"github.com/strata-mix/strata/sphinx"
)

var updateVectors = flag.Bool("update", false, "regenerate testdata/vectors.json")

// vectors are the client's wire formats (docs/client.md): the home token,
// the packet message layout (Pad) and the push frame.
type vectors struct {
	Comment    string        `json:"comment"`
	PacketSize int           `json:"packet_size"`
	Capacity   int           `json:"payload_capacity"`
	Tokens     []tokenVector `json:"home_tokens"`
	Pads       []padVector   `json:"pad"`
	Pushes     []pushVector  `json:"push_frames"`
}

type tokenVector struct {
	Client string `json:"client_id"`
	Home   string `json:"home_id"`
	Epoch  uint64 `json:"epoch"`
	Token  string `json:"token"`
}

type padVector struct {
	Payload string `json:"payload"`
	Message string `json:"message"`
}

type pushVector struct {
	SURBID  string `json:"surb_id"`
	Payload string `json:"payload"`
	Frame   string `json:"frame"`
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func makeVectors(t *testing.T) vectors {
	g := sphinx.DefaultGeometry()
	v := vectors{
		Comment: "Strata client wire formats (docs/client.md). home_tokens: HomeToken(client_id, home_id, epoch) = " +
			"SHA-256(\"strata-home-token-v1\" || client id || home id || epoch u64be)[0:16]. pad: Pad(payload_capacity, payload) = " +
			"len u16be || payload || zeros. push_frames: SURB id || payload (PayloadSize bytes) || zeros up to packet_size.",
		PacketSize: g.PacketSize(), Capacity: g.PayloadCapacity(),
	}
	for i, e := range []uint64{0, 1, 1 << 40} {
		var c, h sphinx.NodeID
		copy(c[:], pattern(len(c), byte(i)))
		copy(h[:], pattern(len(h), byte(100+i)))
		tok := HomeToken(c, h, e)
		v.Tokens = append(v.Tokens, tokenVector{hex.EncodeToString(c[:]), hex.EncodeToString(h[:]), e, hex.EncodeToString(tok[:])})
	}
	for _, n := range []int{0, 5, g.PayloadCapacity() - lengthPrefix} {
		p := pattern(n, 3)
		v.Pads = append(v.Pads, padVector{hex.EncodeToString(p), hex.EncodeToString(Pad(g.PayloadCapacity(), p))})
	}
	var id sphinx.SURBID
	copy(id[:], pattern(len(id), 9))
	payload := pattern(g.PayloadSize, 11)
	frame := make([]byte, g.PacketSize())
	if err := EncodePush(g, frame, id, payload); err != nil {
		t.Fatal(err)
	}
	v.Pushes = append(v.Pushes, pushVector{hex.EncodeToString(id[:]), hex.EncodeToString(payload), hex.EncodeToString(frame)})
	return v
}

// TestVectors checks the published vectors against the code (and
// regenerates them with -update).
func TestVectors(t *testing.T) {
	var v vectors
	testvec.Load(t, filepath.Join("testdata", "vectors.json"), *updateVectors, func() any { return makeVectors(t) }, &v)
	g := sphinx.DefaultGeometry()
	if v.PacketSize != g.PacketSize() || v.Capacity != g.PayloadCapacity() || len(v.Tokens) == 0 || len(v.Pads) == 0 || len(v.Pushes) == 0 {
		t.Fatalf("vectors for another geometry, or empty: %d %d", v.PacketSize, v.Capacity)
	}
	unhex := func(s string) []byte {
		t.Helper()
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tv := range v.Tokens {
		var c, h sphinx.NodeID
		copy(c[:], unhex(tv.Client))
		copy(h[:], unhex(tv.Home))
		if tok := HomeToken(c, h, tv.Epoch); !bytes.Equal(tok[:], unhex(tv.Token)) {
			t.Errorf("token %x, want %s", tok, tv.Token)
		}
	}
	for _, pv := range v.Pads {
		msg := Pad(g.PayloadCapacity(), unhex(pv.Payload))
		if !bytes.Equal(msg, unhex(pv.Message)) {
			t.Errorf("Pad(%d bytes) differs", len(pv.Payload)/2)
		}
		if p, err := Unpad(msg); err != nil || !bytes.Equal(p, unhex(pv.Payload)) {
			t.Errorf("Unpad: %v", err)
		}
	}
	for _, pv := range v.Pushes {
		id, payload, err := ParsePush(g, unhex(pv.Frame))
		if err != nil || !bytes.Equal(id[:], unhex(pv.SURBID)) || !bytes.Equal(payload, unhex(pv.Payload)) {
			t.Errorf("ParsePush: %v", err)
		}
		frame := make([]byte, g.PacketSize())
		if err := EncodePush(g, frame, id, payload); err != nil || !bytes.Equal(frame, unhex(pv.Frame)) {
			t.Errorf("EncodePush: %v", err)
		}
	}
}
