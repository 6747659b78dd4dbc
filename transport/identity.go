package transport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// identityPEMType is the PEM block type of an identity key file.
const identityPEMType = "STRATA IDENTITY KEY"

// identityPrefix is the libp2p protobuf encoding of an Ed25519 private key up
// to its data: field 1 (key type) = 1 (Ed25519), field 2 (data) of 64 bytes.
const identityPrefix = "\x08\x01\x12\x40"

// identityBodySize is the size of the PEM body: the prefix, the 32-byte seed
// and the 32-byte public key.
const identityBodySize = len(identityPrefix) + ed25519.PrivateKeySize

// GenerateIdentity returns a fresh Ed25519 identity key from crypto/rand.
func GenerateIdentity() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("transport: generate identity: %w", err)
	}
	return priv, nil
}

// EncodeIdentity returns the identity file form of key: one PEM block of type
// "STRATA IDENTITY KEY" without headers whose body is the libp2p protobuf
// encoding of the Ed25519 private key, exactly 68 bytes:
//
//	08 01 12 40 || seed (32 bytes) || public key (32 bytes)
//
// (KeyType = Ed25519, Data = the 64-byte RFC 8032 private key). The body is
// byte-for-byte what libp2p's crypto.MarshalPrivateKey writes, so other
// libp2p tools can read the key.
func EncodeIdentity(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("transport: encode identity: %w: private key of %d bytes", ErrNotEd25519, len(key))
	}
	body := make([]byte, 0, identityBodySize)
	body = append(body, identityPrefix...)
	body = append(body, key...)
	return pem.EncodeToMemory(&pem.Block{Type: identityPEMType, Bytes: body}), nil
}

// DecodeIdentity parses the form written by [EncodeIdentity]. It accepts
// nothing else: no text around the block, no PEM headers, no other encodings
// of the key, and the public half must be the one the seed derives.
func DecodeIdentity(data []byte) (ed25519.PrivateKey, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("transport: %w: no PEM block at start", ErrBadIdentity)
	}
	block, rest := pem.Decode(trimmed)
	if block == nil {
		return nil, fmt.Errorf("transport: %w: unreadable PEM block", ErrBadIdentity)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("transport: %w: %d bytes after the PEM block", ErrBadIdentity, len(rest))
	}
	if block.Type != identityPEMType {
		return nil, fmt.Errorf("transport: %w: PEM type %q, want %q", ErrBadIdentity, block.Type, identityPEMType)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("transport: %w: unexpected PEM headers", ErrBadIdentity)
	}
	body := block.Bytes
	if len(body) != identityBodySize {
		return nil, fmt.Errorf("transport: %w: body of %d bytes, want %d", ErrBadIdentity, len(body), identityBodySize)
	}
	if string(body[:len(identityPrefix)]) != identityPrefix {
		return nil, fmt.Errorf("transport: %w: not a libp2p Ed25519 private key (prefix % x)", ErrBadIdentity, body[:len(identityPrefix)])
	}
	raw := body[len(identityPrefix):]
	key := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	if !bytes.Equal(key[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
		return nil, fmt.Errorf("transport: %w: public key does not match seed", ErrBadIdentity)
	}
	return key, nil
}

// SaveIdentity writes key to path in the form of [EncodeIdentity] with mode
// 0600. It never overwrites: if path exists it returns an error wrapping
// fs.ErrExist. The file appears whole or not at all (written to a temporary
// file, fsynced, then linked into place and the directory fsynced), so a
// crash cannot leave a truncated key behind.
func SaveIdentity(path string, key ed25519.PrivateKey) error {
	data, err := EncodeIdentity(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".identity-*.tmp")
	if err != nil {
		return fmt.Errorf("transport: save identity: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	err = writeSynced(tmp, data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("transport: save identity: %w", err)
	}
	// Link fails when path exists, unlike rename, which would replace an
	// existing identity without a word.
	if err := os.Link(tmpName, path); err != nil {
		return fmt.Errorf("transport: save identity: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("transport: save identity: %w", err)
	}
	return nil
}

func writeSynced(f *os.File, data []byte) error {
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// LoadIdentity reads an identity file written by [SaveIdentity]. Like ssh, it
// refuses a file that group or others may access, since the key is the node.
func LoadIdentity(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("transport: load identity: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("transport: load identity: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("transport: load identity %s: %w (mode %#o, want 0600)", path, ErrIdentityPermissions, perm)
	}
	// An identity file is a few hundred bytes; read a little more than any
	// valid one so that a huge file fails to decode instead of filling memory.
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("transport: load identity: %w", err)
	}
	key, err := DecodeIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return key, nil
}
