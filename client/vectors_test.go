package client

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"path/filepath"
	"slices"
	"testing"

	"github.com/strata-mix/strata/internal/testvec"
	"github.com/strata-mix/strata/sphinx"
)

var updateVectors = flag.Bool("update", false, "regenerate testdata/vectors.json")

// vectors are the client's wire formats (docs/client.md): the home secret
// and delivery tokens, the registration request (valid and invalid), the
// packet message layout (Pad) and the push frame.
type vectors struct {
	Comment      string            `json:"comment"`
	PacketSize   int               `json:"packet_size"`
	Capacity     int               `json:"payload_capacity"`
	Secrets      []secretVector    `json:"home_secrets"`
	Tokens       []tokenVector     `json:"home_tokens"`
	Registers    []registerVector  `json:"register_valid"`
	BadRegisters []badRegisterVect `json:"register_invalid"`
	Pads         []padVector       `json:"pad"`
	Pushes       []pushVector      `json:"push_frames"`
}

type secretVector struct {
	Seed   string `json:"identity_seed"`
	Home   string `json:"home_id"`
	Secret string `json:"secret"`
}

type tokenVector struct {
	Secret string `json:"secret"`
	Epoch  uint64 `json:"epoch"`
	Token  string `json:"token"`
}

type registerVector struct {
	Home    string `json:"home_id"`
	Secret  string `json:"secret"`
	Message string `json:"message"`
}

type badRegisterVect struct {
	Message string `json:"message"`
	Why     string `json:"why"`
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
		Comment: "Strata client wire formats (docs/client.md). home_secrets: HMAC-SHA256(key = Ed25519 identity seed, " +
			"\"strata-home-secret-v1\" || home id). home_tokens: HMAC-SHA256(key = secret, \"strata-home-token-v2\" || epoch u64be)[0:16]. " +
			"register: version 0x01 || home id (32) || secret (32), exactly 65 bytes, nonzero secret; the home answers 0x01. " +
			"pad: Pad(payload_capacity, payload) = len u16be || payload || zeros. push_frames: SURB id || payload (PayloadSize bytes) || zeros up to packet_size.",
		PacketSize: g.PacketSize(), Capacity: g.PayloadCapacity(),
	}
	for i := range 3 {
		seed := pattern(ed25519.SeedSize, byte(i))
		var h sphinx.NodeID
		copy(h[:], pattern(len(h), byte(100+i)))
		s := DeriveHomeSecret(ed25519.NewKeyFromSeed(seed), h)
		v.Secrets = append(v.Secrets, secretVector{hex.EncodeToString(seed), hex.EncodeToString(h[:]), hex.EncodeToString(s[:])})
		for _, e := range []uint64{0, 1, 1 << 40} {
			tok := s.Token(e)
			v.Tokens = append(v.Tokens, tokenVector{hex.EncodeToString(s[:]), e, hex.EncodeToString(tok[:])})
		}
		msg := EncodeRegister(h, s)
		v.Registers = append(v.Registers, registerVector{hex.EncodeToString(h[:]), hex.EncodeToString(s[:]), hex.EncodeToString(msg)})
	}
	good := EncodeRegister(sphinx.NodeID{1}, HomeSecret{2})
	v2 := bytes.Clone(good)
	v2[0] = 2
	zero := EncodeRegister(sphinx.NodeID{1}, HomeSecret{})
	v.BadRegisters = []badRegisterVect{
		{hex.EncodeToString(nil), "empty"},
		{hex.EncodeToString(good[:RegisterSize-1]), "64 bytes"},
		{hex.EncodeToString(append(bytes.Clone(good), 0)), "66 bytes"},
		{hex.EncodeToString(v2), "version 2"},
		{hex.EncodeToString(zero), "all-zero secret"},
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

// hmacSHA256 is computed here from crypto/hmac, independently of the
// package's code, to check the vectors against the specification.
func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// TestVectors checks the published vectors against the code and against an
// independent computation of the specification (and regenerates them with
// -update).
func TestVectors(t *testing.T) {
	var v vectors
	testvec.Load(t, filepath.Join("testdata", "vectors.json"), *updateVectors, func() any { return makeVectors(t) }, &v)
	g := sphinx.DefaultGeometry()
	if v.PacketSize != g.PacketSize() || v.Capacity != g.PayloadCapacity() || len(v.Secrets) == 0 || len(v.Tokens) == 0 ||
		len(v.Registers) == 0 || len(v.BadRegisters) == 0 || len(v.Pads) == 0 || len(v.Pushes) == 0 {
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
	for _, sv := range v.Secrets {
		var h sphinx.NodeID
		copy(h[:], unhex(sv.Home))
		s := DeriveHomeSecret(ed25519.NewKeyFromSeed(unhex(sv.Seed)), h)
		if !bytes.Equal(s[:], unhex(sv.Secret)) {
			t.Errorf("secret %x, want %s", s, sv.Secret)
		}
		if ind := hmacSHA256(unhex(sv.Seed), []byte("strata-home-secret-v1"), h[:]); !bytes.Equal(ind, unhex(sv.Secret)) {
			t.Errorf("vector secret %s is not the specification's %x", sv.Secret, ind)
		}
	}
	for _, tv := range v.Tokens {
		var s HomeSecret
		copy(s[:], unhex(tv.Secret))
		if tok := s.Token(tv.Epoch); !bytes.Equal(tok[:], unhex(tv.Token)) {
			t.Errorf("token %x, want %s", tok, tv.Token)
		}
		e := binary.BigEndian.AppendUint64(nil, tv.Epoch)
		if ind := hmacSHA256(s[:], []byte("strata-home-token-v2"), e)[:16]; !bytes.Equal(ind, unhex(tv.Token)) {
			t.Errorf("vector token %s is not the specification's %x", tv.Token, ind)
		}
	}
	for _, rv := range v.Registers {
		msg := unhex(rv.Message)
		home, s, err := ParseRegister(msg)
		if err != nil || !bytes.Equal(home[:], unhex(rv.Home)) || !bytes.Equal(s[:], unhex(rv.Secret)) {
			t.Errorf("ParseRegister(%s): %v", rv.Message, err)
		}
		if !bytes.Equal(EncodeRegister(home, s), msg) {
			t.Errorf("EncodeRegister differs from %s", rv.Message)
		}
		if ind := slices.Concat([]byte{1}, unhex(rv.Home), unhex(rv.Secret)); !bytes.Equal(ind, msg) {
			t.Errorf("vector %s is not version ‖ home ‖ secret", rv.Message)
		}
	}
	for _, bv := range v.BadRegisters {
		if _, _, err := ParseRegister(unhex(bv.Message)); !errors.Is(err, ErrRegister) {
			t.Errorf("invalid registration (%s) parsed: %v", bv.Why, err)
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
