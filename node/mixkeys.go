package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-mix/strata/sphinx"
)

// Mix keys live in <data dir>/mix/<epoch>.key as 64 hex digits and a
// newline, mode 0600.

func mixKeyPath(dataDir string, epoch uint64) string {
	return filepath.Join(dataDir, "mix", fmt.Sprintf("%d.key", epoch))
}

// EnsureMixKey returns the node's mix key for epoch, generating and saving
// it (fsynced) if it does not exist yet.
func EnsureMixKey(dataDir string, epoch uint64) (*sphinx.PrivateKey, error) {
	if k, err := LoadMixKey(dataDir, epoch); err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	k, _, err := sphinx.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	path := mixKeyPath(dataDir, epoch)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := writeFileSynced(path, []byte(hex.EncodeToString(k[:])+"\n")); err != nil {
		return nil, fmt.Errorf("node: save mix key: %w", err)
	}
	return k, nil
}

// LoadMixKey reads the node's mix key for epoch.
func LoadMixKey(dataDir string, epoch uint64) (*sphinx.PrivateKey, error) {
	b, err := os.ReadFile(mixKeyPath(dataDir, epoch))
	if err != nil {
		return nil, fmt.Errorf("node: mix key of epoch %d: %w", epoch, err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != sphinx.KeySize {
		return nil, fmt.Errorf("node: mix key of epoch %d: malformed", epoch)
	}
	return (*sphinx.PrivateKey)(raw), nil
}

// writeFileSynced writes data to a file at path (mode 0600) through a
// temporary file, fsyncs it and its directory, so a crash leaves the old
// contents or the new, never a part (mix keys, chat state).
func writeFileSynced(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
