package e2e

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Store keeps identity, key packages, contacts, rooms (MLS state and the
// ordering history) and message history in one bbolt file. Every value is
// sealed with XChaCha20-Poly1305 under a key derived from a passphrase with
// argon2id; the bucket and key are the AEAD's associated data, so values
// cannot be swapped between keys. Each change is one bbolt transaction,
// fsynced before it returns, so a kill -9 leaves either the old or the new
// state.
type Store struct {
	db   *bolt.DB
	aead cipher.AEAD
}

// KDFParams are argon2id's costs. They are stored (with the salt) in the
// file, so a store always reopens with the costs it was created with.
type KDFParams struct {
	Time    uint32 `json:"t"`
	Memory  uint32 `json:"m"` // KiB
	Threads uint8  `json:"p"`
}

// DefaultKDF is RFC 9106's second recommended option (t=3, 64 MiB).
var DefaultKDF = KDFParams{Time: 3, Memory: 64 * 1024, Threads: 2}

var (
	bMeta     = []byte("meta")
	bIdentity = []byte("identity")
	bKPs      = []byte("keypackages")
	bContacts = []byte("contacts")
	bRooms    = []byte("rooms")
	bHistory  = []byte("history")
)

type storeMeta struct {
	Salt []byte    `json:"salt"`
	KDF  KDFParams `json:"kdf"`
}

const checkValue = "strata-e2e-store-v1"

// OpenStore opens (or creates, with kdf) the store at path. A wrong
// passphrase gives ErrWrongPassphrase.
func OpenStore(path, passphrase string, kdf KDFParams) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("e2e: open store: %w", err)
	}
	s := &Store{db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bIdentity, bKPs, bContacts, bRooms, bHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		mb := tx.Bucket(bMeta)
		var meta storeMeta
		if raw := mb.Get([]byte("kdf")); raw != nil {
			if err := json.Unmarshal(raw, &meta); err != nil || len(meta.Salt) != 16 || meta.KDF.Time == 0 || meta.KDF.Memory == 0 || meta.KDF.Threads == 0 {
				return fmt.Errorf("%w: store header", ErrWrongPassphrase)
			}
		} else {
			if kdf.Time == 0 || kdf.Memory == 0 || kdf.Threads == 0 {
				return errors.New("e2e: invalid KDF parameters")
			}
			meta = storeMeta{Salt: make([]byte, 16), KDF: kdf}
			if _, err := rand.Read(meta.Salt); err != nil {
				return err
			}
			raw, _ := json.Marshal(meta)
			if err := mb.Put([]byte("kdf"), raw); err != nil {
				return err
			}
		}
		key := argon2.IDKey([]byte(passphrase), meta.Salt, meta.KDF.Time, meta.KDF.Memory, meta.KDF.Threads, chacha20poly1305.KeySize)
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return err
		}
		s.aead = aead
		if mb.Get([]byte("check")) == nil {
			return s.put(tx, bMeta, []byte("check"), []byte(checkValue))
		}
		v, err := s.get(tx, bMeta, []byte("check"))
		if err != nil || string(v) != checkValue {
			return ErrWrongPassphrase
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func aad(bucket, key []byte) []byte {
	return append(append(append([]byte{}, bucket...), 0), key...)
}

func (s *Store) put(tx *bolt.Tx, bucket, key, value []byte) error {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(value)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, s.aead.Seal(nonce, nonce, value, aad(bucket, key)))
}

// get returns nil, nil for a missing key.
func (s *Store) get(tx *bolt.Tx, bucket, key []byte) ([]byte, error) {
	raw := tx.Bucket(bucket).Get(key)
	if raw == nil {
		return nil, nil
	}
	if len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: short value in %s", ErrWrongPassphrase, bucket)
	}
	n := s.aead.NonceSize()
	v, err := s.aead.Open(nil, raw[:n], raw[n:], aad(bucket, key))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrWrongPassphrase, bucket)
	}
	return v, nil
}

func (s *Store) putJSON(tx *bolt.Tx, bucket, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.put(tx, bucket, key, b)
}

func (s *Store) getJSON(tx *bolt.Tx, bucket, key []byte, v any) (bool, error) {
	b, err := s.get(tx, bucket, key)
	if err != nil || b == nil {
		return false, err
	}
	return true, json.Unmarshal(b, v)
}

// each calls f with every decrypted value of a bucket (optionally under a
// key prefix).
func (s *Store) each(tx *bolt.Tx, bucket, prefix []byte, f func(k, v []byte) error) error {
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
		v, err := s.get(tx, bucket, k)
		if err != nil {
			return err
		}
		if err := f(k, v); err != nil {
			return err
		}
	}
	return nil
}

func historyKey(room []byte, seq uint64) []byte {
	k := append(append([]byte{}, room...), 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: stored value: %v", ErrMalformed, err)
	}
	return nil
}
