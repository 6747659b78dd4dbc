package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/strata-mix/strata/sphinx"
	bolt "go.etcd.io/bbolt"
)

// ErrUnknownSURB means a reply names a SURB id the store does not hold: never
// made here, already used, or expired with its epoch.
var ErrUnknownSURB = errors.New("client: unknown or expired SURB")

var (
	bucketSURBs   = []byte("surbs")    // id → epoch (8, big-endian) ‖ reply keys
	bucketByEpoch = []byte("by-epoch") // epoch (8) ‖ id → empty, for expiry
)

// SURBStore is the SURB unwinding database: the reply keys of every SURB the
// client has handed out, keyed by SURB id, until the reply comes back or the
// epoch keys the SURB was made under expire. It is a bbolt file; Put returns
// only once the keys are on disk, so a crash between sending a SURB and
// receiving its reply cannot lose them. Safe for concurrent use.
//
// Take does not wait for the disk: it reads the keys, marks the id taken in
// memory and deletes the record in the background (concurrent deletions
// share one commit), so a client opens replies at the speed of a read, not
// of an fsync. A crash before the deletion commits leaves a used SURB's
// keys on disk until its epoch expires; a second reply through that SURB
// would be a replay, which its first hop drops.
type SURBStore struct {
	db *bolt.DB

	mu     sync.Mutex
	closed bool
	taken  map[sphinx.SURBID]struct{} // taken; deletion not committed yet
	wg     sync.WaitGroup             // background deletions
}

// OpenSURBStore opens (creating if needed) the store at path.
func OpenSURBStore(path string) (*SURBStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err == nil {
		// Replies wait on Put only until a batch commits; 2 ms keeps that
		// short while still sharing fsyncs among concurrent callers.
		db.MaxBatchDelay = 2 * time.Millisecond
	}
	if err != nil {
		return nil, fmt.Errorf("client: open SURB store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSURBs, bucketByEpoch} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("client: init SURB store %s: %w", path, err)
	}
	return &SURBStore{db: db, taken: map[sphinx.SURBID]struct{}{}}, nil
}

// Close waits for the background deletions and closes the store.
func (s *SURBStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	return s.db.Close()
}

// Put stores the reply keys of SURBs made under epoch's keys. It returns once
// they are durable; concurrent calls share one fsync.
func (s *SURBStore) Put(epoch uint64, keys ...*sphinx.ReplyKeys) error {
	recs := make([][]byte, len(keys))
	for i, k := range keys {
		b, err := k.MarshalBinary()
		if err != nil {
			return fmt.Errorf("client: encode reply keys: %w", err)
		}
		recs[i] = binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(b)), epoch)
		recs[i] = append(recs[i], b...)
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		surbs, byEpoch := tx.Bucket(bucketSURBs), tx.Bucket(bucketByEpoch)
		for i, k := range keys {
			if err := surbs.Put(k.ID[:], recs[i]); err != nil {
				return err
			}
			if err := byEpoch.Put(epochKey(epoch, k.ID), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("client: store reply keys: %w", err)
	}
	return nil
}

// Take removes and returns the reply keys of SURB id and the epoch it was
// made under. A SURB opens one reply; a second Take fails with
// ErrUnknownSURB. The record's deletion commits in the background (see
// SURBStore).
func (s *SURBStore) Take(id sphinx.SURBID) (*sphinx.ReplyKeys, uint64, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, 0, errors.New("client: SURB store closed")
	}
	if _, ok := s.taken[id]; ok {
		s.mu.Unlock()
		return nil, 0, ErrUnknownSURB
	}
	s.taken[id] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		delete(s.taken, id)
		s.mu.Unlock()
		s.wg.Done()
	}

	var keys sphinx.ReplyKeys
	var epoch uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSURBs).Get(id[:])
		if v == nil {
			return ErrUnknownSURB
		}
		if len(v) < 8 {
			return fmt.Errorf("client: SURB record of %d bytes", len(v))
		}
		epoch = binary.BigEndian.Uint64(v)
		if err := keys.UnmarshalBinary(v[8:]); err != nil {
			return fmt.Errorf("client: SURB record: %w", err)
		}
		return nil
	})
	if err != nil {
		release()
		return nil, 0, err
	}
	go func() {
		err := s.db.Batch(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketSURBs).Delete(id[:]); err != nil {
				return err
			}
			return tx.Bucket(bucketByEpoch).Delete(epochKey(epoch, id))
		})
		if err != nil {
			// The record stays until its epoch expires; the id stays
			// taken in memory so this process never opens it twice.
			s.wg.Done()
			return
		}
		release()
	}()
	return &keys, epoch, nil
}

// Expire deletes the keys of every SURB made under an epoch before epoch
// (whose mix keys are gone, so no reply can come) and returns how many.
func (s *SURBStore) Expire(epoch uint64) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		surbs, byEpoch := tx.Bucket(bucketSURBs), tx.Bucket(bucketByEpoch)
		c := byEpoch.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < epoch; k, _ = c.First() {
			if err := surbs.Delete(k[8:]); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("client: expire SURBs: %w", err)
	}
	return n, nil
}

// settle waits for the background deletions (tests; no Take may run
// concurrently).
func (s *SURBStore) settle() { s.wg.Wait() }

// Len returns the number of SURBs awaiting a reply.
func (s *SURBStore) Len() (int, error) {
	s.mu.Lock()
	taken := make([]sphinx.SURBID, 0, len(s.taken))
	for id := range s.taken {
		taken = append(taken, id)
	}
	s.mu.Unlock()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSURBs)
		n = b.Stats().KeyN
		for _, id := range taken {
			if b.Get(id[:]) != nil {
				n--
			}
		}
		return nil
	})
	return n, err
}

func epochKey(epoch uint64, id sphinx.SURBID) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+sphinx.SURBIDSize), epoch), id[:]...)
}
