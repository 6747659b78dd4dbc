package testvec

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// Hex is a byte string that JSON carries as hex. An empty one is omitted
// (with omitempty) and reads back as nil.
type Hex []byte

// MarshalText encodes h as lower-case hex.
func (h Hex) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// UnmarshalText decodes hex.
func (h *Hex) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	*h = v
	return err
}

// Of copies b, normalizing an empty byte string to nil as JSON reads it
// back.
func Of(b []byte) Hex {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}

// Load reads the JSON file at path into v. With update set it first
// writes gen() there, indented, so that the file is what the code
// produces. A missing or malformed file fails t, naming the command that
// rewrites it.
func Load(t testing.TB, path string, update bool, gen func() any, v any) {
	t.Helper()
	rewrite := "go test -run TestVectors -update in the package's directory"
	if update {
		b, err := json.MarshalIndent(gen(), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (%s)", err, rewrite)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v (%s)", path, err, rewrite)
	}
}

// JSON is v's compact JSON encoding, to compare what a file holds with
// what the code produces.
func JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
