package transport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

func TestIdentityFileRoundTrip(t *testing.T) {
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "identity.pem")
	if err := SaveIdentity(path, key); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("identity file mode %#o, want 0600", perm)
	}
	got, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(key) {
		t.Fatal("loaded key differs from saved key")
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file", len(entries))
	}
}

func TestSaveIdentityNeverOverwrites(t *testing.T) {
	first, _ := GenerateIdentity()
	second, _ := GenerateIdentity()
	path := filepath.Join(t.TempDir(), "identity.pem")
	if err := SaveIdentity(path, first); err != nil {
		t.Fatal(err)
	}
	if err := SaveIdentity(path, second); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second save: %v, want fs.ErrExist", err)
	}
	got, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(first) {
		t.Fatal("the first identity was replaced")
	}
}

func TestLoadIdentityRefusesFilesOthersCanRead(t *testing.T) {
	key, _ := GenerateIdentity()
	path := filepath.Join(t.TempDir(), "identity.pem")
	if err := SaveIdentity(path, key); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(path); !errors.Is(err, ErrIdentityPermissions) {
		t.Fatalf("LoadIdentity of a 0644 file: %v", err)
	}
}

func TestIdentityBodyIsTheLibp2pEncoding(t *testing.T) {
	key, _ := GenerateIdentity()
	data, err := EncodeIdentity(key)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	lk, err := crypto.UnmarshalPrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("libp2p cannot read the body: %v", err)
	}
	raw, err := lk.Raw()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, key) {
		t.Fatal("libp2p reads a different key")
	}
	want, err := crypto.MarshalPrivateKey(lk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(block.Bytes, want) {
		t.Fatalf("body % x differs from libp2p's % x", block.Bytes, want)
	}
}

func TestDecodeIdentityRejectsMalformedInput(t *testing.T) {
	key, _ := GenerateIdentity()
	good, _ := EncodeIdentity(key)
	block, _ := pem.Decode(good)
	reencode := func(typ string, headers map[string]string, body []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: body})
	}
	otherPub := append([]byte(nil), block.Bytes...)
	otherPub[len(otherPub)-1] ^= 1
	wrongType := append([]byte(nil), block.Bytes...)
	wrongType[1] = 0 // RSA
	tests := []struct {
		name string
		data []byte
	}{
		{"empty input", nil},
		{"bare base64", []byte(base64.StdEncoding.EncodeToString(block.Bytes))},
		{"text before the block", append([]byte("key:\n"), good...)},
		{"text after the block", append(append([]byte(nil), good...), "trailer"...)},
		{"two blocks", append(append([]byte(nil), good...), good...)},
		{"another PEM type", reencode("PRIVATE KEY", nil, block.Bytes)},
		{"PEM headers", reencode(identityPEMType, map[string]string{"Proc-Type": "4,ENCRYPTED"}, block.Bytes)},
		{"a truncated body", reencode(identityPEMType, nil, block.Bytes[:len(block.Bytes)-1])},
		{"an extended body", reencode(identityPEMType, nil, append(append([]byte(nil), block.Bytes...), 0))},
		{"a non-Ed25519 key type", reencode(identityPEMType, nil, wrongType)},
		{"a public half that does not match the seed", reencode(identityPEMType, nil, otherPub)},
		{"a cut-off file", good[:len(good)/2]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeIdentity(tc.data); !errors.Is(err, ErrBadIdentity) {
				t.Fatalf("err = %v, want ErrBadIdentity", err)
			}
		})
	}
	t.Run("surrounding whitespace is fine", func(t *testing.T) {
		got, err := DecodeIdentity(append(append([]byte("\n  "), good...), "\n\n"...))
		if err != nil || !got.Equal(key) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestNodeIDIsSHA256OfTheRawPublicKey(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	id := NodeIDFromPublicKey(pub)
	if want := sha256.Sum256(pub); id != want {
		t.Fatalf("id = %x, want %x", id, want)
	}
	if len(id.String()) != 16 || !strings.HasPrefix(id.Hex(), id.String()) {
		t.Errorf("String() = %q, Hex() = %q", id.String(), id.Hex())
	}
	lk, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := nodeIDOfLibp2pKey(lk); err != nil || got != id {
		t.Errorf("id from libp2p key = %v, %v", got, err)
	}
	if !NodeIDFromPublicKey(pub[:31]).IsZero() {
		t.Error("a short key has a non-zero id")
	}
}

func TestParseNodeID(t *testing.T) {
	key, _ := GenerateIdentity()
	id := NodeIDFromPublicKey(key.Public().(ed25519.PublicKey))
	got, err := ParseNodeID(id.Hex())
	if err != nil || got != id {
		t.Fatalf("ParseNodeID(Hex()) = %v, %v", got, err)
	}
	text, _ := id.MarshalText()
	var back NodeID
	if err := back.UnmarshalText(text); err != nil || back != id {
		t.Fatalf("text round trip = %v, %v", back, err)
	}
	for _, bad := range []string{"", id.String(), id.Hex() + "00", strings.Replace(id.Hex(), id.Hex()[:1], "g", 1)} {
		if _, err := ParseNodeID(bad); err == nil {
			t.Errorf("ParseNodeID(%q) accepted", bad)
		}
	}
}
