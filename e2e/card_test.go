package e2e

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vectorCard is deterministic: a fixed seed, fixed addresses and blobs
// (the codec does not interpret key packages or SURBs).
func vectorCard(t testing.TB) (*Card, *Identity) {
	t.Helper()
	id := &Identity{Name: "alice", Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))}
	c := &Card{Name: "alice", KeyPackages: [][]byte{[]byte("kp-one"), []byte("kp-two")}, SURBs: [][]byte{[]byte("surb")}}
	var a Address
	for i := range a.Node {
		a.Node[i] = byte(i)
	}
	for i := range a.Mailbox {
		a.Mailbox[i] = byte(0xa0 + i)
	}
	c.Addresses = []Address{a}
	if err := c.Sign(id); err != nil {
		t.Fatal(err)
	}
	return c, id
}

type cardVectorFile struct {
	Comment string `json:"comment"`
	Seed    string `json:"identity_seed"`
	Name    string `json:"name"`
	Node    string `json:"node"`
	Mailbox string `json:"mailbox"`
	KPs     []string
	SURBs   []string
	Binary  string `json:"binary"`
	Code    string `json:"code"`
}

func TestCardVectors(t *testing.T) {
	c, _ := vectorCard(t)
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	code, err := c.Code()
	if err != nil {
		t.Fatal(err)
	}
	want := cardVectorFile{
		Comment: "contact card (docs/e2e.md): Ed25519 seed 0x07*32, one address, key packages and SURBs as opaque bytes",
		Seed:    strings.Repeat("07", 32), Name: c.Name,
		Node: hex.EncodeToString(c.Addresses[0].Node[:]), Mailbox: hex.EncodeToString(c.Addresses[0].Mailbox[:]),
		KPs: []string{hex.EncodeToString(c.KeyPackages[0]), hex.EncodeToString(c.KeyPackages[1])}, SURBs: []string{hex.EncodeToString(c.SURBs[0])},
		Binary: hex.EncodeToString(b), Code: code,
	}
	path := filepath.Join("testdata", "card_vectors.json")
	if os.Getenv("E2E_UPDATE_VECTORS") != "" {
		j, _ := json.MarshalIndent([]cardVectorFile{want}, "", "  ")
		if err := os.WriteFile(path, append(j, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []cardVectorFile
	if err := json.Unmarshal(data, &got); err != nil || len(got) != 1 {
		t.Fatalf("vectors: %v", err)
	}
	if got[0].Binary != want.Binary || got[0].Code != want.Code {
		t.Fatalf("encoding changed:\n got %s\nwant %s", want.Binary, got[0].Binary)
	}
	parsed, err := ParseCode(got[0].Code)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Name != "alice" || len(parsed.KeyPackages) != 2 || !bytes.Equal(parsed.SURBs[0], []byte("surb")) || parsed.Addresses[0] != c.Addresses[0] {
		t.Fatalf("parsed %+v", parsed)
	}
}

func TestCardRejects(t *testing.T) {
	c, _ := vectorCard(t)
	b, _ := c.MarshalBinary()
	code, _ := c.Code()
	// Case and whitespace do not matter.
	if _, err := ParseCode(strings.ToUpper(code[:20]) + "\n " + code[20:]); err != nil {
		t.Fatal(err)
	}
	// A typo is caught by the checksum.
	typo := []byte(code)
	i := len(cardCodePrefix) + 10
	if typo[i] == 'a' {
		typo[i] = 'b'
	} else {
		typo[i] = 'a'
	}
	if _, err := ParseCode(string(typo)); !errors.Is(err, ErrCardChecksum) {
		t.Fatalf("typo: %v", err)
	}
	// Any flipped byte breaks the signature or the structure.
	for i := range b {
		x := bytes.Clone(b)
		x[i] ^= 0x40
		if _, err := ParseCard(x); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	for n := 0; n < len(b); n++ {
		if _, err := ParseCard(b[:n]); err == nil {
			t.Fatalf("truncated to %d accepted", n)
		}
	}
	if _, err := ParseCard(append(bytes.Clone(b), 0)); !errors.Is(err, ErrCardMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
	// Signed by someone else.
	other := newIdentity(t, "mallory")
	c2, _ := vectorCard(t)
	c2.Signature = ed25519.Sign(other.Key, []byte("x"))
	b2, _ := c2.MarshalBinary()
	if _, err := ParseCard(b2); !errors.Is(err, ErrCardSignature) {
		t.Fatalf("bad signature: %v", err)
	}
}

func FuzzParseCard(f *testing.F) {
	c, _ := vectorCard(f)
	b, _ := c.MarshalBinary()
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		card, err := ParseCard(data)
		if err != nil {
			return
		}
		again, err := card.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted card does not re-encode canonically: %v", err)
		}
	})
}

func FuzzParseCode(f *testing.F) {
	c, _ := vectorCard(f)
	code, _ := c.Code()
	f.Add(code)
	f.Add("strata1")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseCode(s)
	})
}
