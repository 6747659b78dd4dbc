package mailbox

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// bucketSURBs holds the nodes' SURB stock: mailbox id (16) ‖ epoch (8) ‖
// number (8, the bucket's sequence) → encoded SURB. It survives restarts;
// a SURB is removed once spent (lazily, with the delivered marks: see
// Node) or expired with its epoch.
var bucketSURBs = []byte("surbs")

// surbKeySize is the size of a stocked SURB's key.
const surbKeySize = IDSize + 8 + 8

// StockedSURB is a SURB in a mailbox's stock.
type StockedSURB struct {
	// Key names it in the store (Flush removes it by this key).
	Key []byte
	// Epoch is the key epoch the SURB was made under.
	Epoch uint64
	SURB  []byte
}

// AddSURBs adds surbs, made under key epoch epoch, to the stock of mailbox
// id, durably (fsynced) before it returns; ErrNoMailbox if id does not
// exist.
func (s *Store) AddSURBs(id ID, epoch uint64, surbs [][]byte) ([]StockedSURB, error) {
	var out []StockedSURB
	err := s.db.Batch(func(tx *bolt.Tx) error {
		out = out[:0]
		if _, _, err := openBox(tx, id); err != nil {
			return err
		}
		b := tx.Bucket(bucketSURBs)
		for _, surb := range surbs {
			n, err := b.NextSequence()
			if err != nil {
				return err
			}
			k := make([]byte, 0, surbKeySize)
			k = append(k, id[:]...)
			k = binary.BigEndian.AppendUint64(k, epoch)
			k = binary.BigEndian.AppendUint64(k, n)
			if err := b.Put(k, surb); err != nil {
				return err
			}
			out = append(out, StockedSURB{Key: k, Epoch: epoch, SURB: bytes.Clone(surb)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SURBs returns the whole stock by mailbox, each mailbox's SURBs in the
// order they were added.
func (s *Store) SURBs() (map[ID][]StockedSURB, error) {
	out := map[ID][]StockedSURB{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSURBs).ForEach(func(k, v []byte) error {
			if len(k) != surbKeySize {
				return fmt.Errorf("mailbox: corrupt SURB key of %d bytes", len(k))
			}
			id := ID(k[:IDSize])
			out[id] = append(out[id], StockedSURB{Key: bytes.Clone(k), Epoch: binary.BigEndian.Uint64(k[IDSize:]), SURB: bytes.Clone(v)})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for id, ss := range out {
		// Keys sort by epoch first; the node wants arrival order.
		sortByNumber(ss)
		out[id] = ss
	}
	return out, nil
}

func sortByNumber(ss []StockedSURB) {
	slices.SortFunc(ss, func(a, b StockedSURB) int {
		return cmp.Compare(binary.BigEndian.Uint64(a.Key[IDSize+8:]), binary.BigEndian.Uint64(b.Key[IDSize+8:]))
	})
}

func deleteSURBs(tx *bolt.Tx, keys [][]byte) error {
	b := tx.Bucket(bucketSURBs)
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
