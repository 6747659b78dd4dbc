package pki

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// store persists the application state in a bbolt file: the kv pairs in
// bucket "state", and in bucket "meta" the last committed height, its
// application hash and the state chain digest. Each block's writes and its
// meta go in one bbolt transaction, fsynced before Commit returns, so a
// crash leaves the state of one committed height, never a mix.
type store struct{ db *bolt.DB }

var (
	bucketState = []byte("state")
	bucketMeta  = []byte("meta")
	metaHeight  = []byte("height")
	metaAppHash = []byte("app_hash")
	metaChain   = []byte("chain")
)

// committed is what the store holds of the last committed block.
type committed struct {
	height  int64
	appHash []byte
	chain   [32]byte
}

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("pki: open state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("pki: open state %s: %w", path, err)
	}
	return &store{db: db}, nil
}

// load reads the whole state into memory.
func (s *store) load() (map[string][]byte, committed, error) {
	state := make(map[string][]byte)
	var c committed
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketState).ForEach(func(k, v []byte) error {
			state[string(k)] = append([]byte{}, v...)
			return nil
		})
		if err != nil {
			return err
		}
		m := tx.Bucket(bucketMeta)
		if h := m.Get(metaHeight); h != nil {
			if len(h) != 8 {
				return errors.New("corrupt height")
			}
			c.height = int64(binary.BigEndian.Uint64(h))
		}
		c.appHash = append([]byte(nil), m.Get(metaAppHash)...)
		if ch := m.Get(metaChain); ch != nil {
			if len(ch) != 32 {
				return errors.New("corrupt state chain digest")
			}
			copy(c.chain[:], ch)
		}
		return nil
	})
	if err != nil {
		return nil, c, fmt.Errorf("pki: load state: %w", err)
	}
	return state, c, nil
}

// commit writes a block's changes and meta in one fsynced transaction.
func (s *store) commit(writes map[string][]byte, c committed) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketState)
		for k, v := range writes {
			var err error
			if v == nil {
				err = b.Delete([]byte(k))
			} else {
				err = b.Put([]byte(k), v)
			}
			if err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if err := m.Put(metaHeight, binary.BigEndian.AppendUint64(nil, uint64(c.height))); err != nil {
			return err
		}
		if err := m.Put(metaAppHash, c.appHash); err != nil {
			return err
		}
		return m.Put(metaChain, c.chain[:])
	})
	if err != nil {
		return fmt.Errorf("pki: commit height %d: %w", c.height, err)
	}
	return nil
}

func (s *store) close() error { return s.db.Close() }
