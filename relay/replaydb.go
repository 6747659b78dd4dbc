package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
)

// ReplayDB remembers the replay tags a relay has seen, per key epoch, so that
// a packet seen before under the same key is dropped — always, including
// after a restart within the epoch.
//
// In memory each epoch is an exact set of 64-bit tag prefixes (tagSet): a
// false positive needs two of the epoch's n tags to share 64 bits, which
// for a lookup happens with probability n/2⁶⁴ (4·10⁻¹² for an hour at
// 20,000 packets/s), and memory is 11 bytes an entry on average, 21 at
// worst. On disk each epoch is an append-only log of batches, each batch
// a group commit fsynced before its packets go on:
//
//	batch = count (4, big-endian) ‖ CRC-32C of the prefixes (4) ‖ count × prefix (8)
//
// A batch torn by a crash fails its CRC or length and is cut off, with
// everything after it; the tags in it were never acknowledged, so their
// packets were never forwarded. Epochs older than the previous one are
// deleted by Rotate. The DB refuses (ErrReplayFull) to grow past
// MaxEntries rather than forget or panic.
//
// A ReplayDB is used by one goroutine at a time (the relay's replay stage).
type ReplayDB struct {
	dir        string
	maxEntries int
	epochs     map[uint64]*epochTags
	buf        []byte
}

type epochTags struct {
	set  tagSet
	log  *os.File
	size int64 // valid bytes in the log
}

// ErrReplayFull means the DB holds MaxEntries tags: the relay is receiving
// more than its sizing allows, and the packet is dropped.
var ErrReplayFull = errors.New("relay: replay database full")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

var logName = regexp.MustCompile(`^replay-([0-9]{1,20})\.log$`)

// OpenReplayDB opens the replay logs in dir, creating dir if needed, and
// loads every epoch found. maxEntries caps the tags held over all epochs:
// size it as (epochs kept = 3) × epoch length × maximum packet rate.
func OpenReplayDB(dir string, maxEntries int) (*ReplayDB, error) {
	if maxEntries <= 0 {
		return nil, fmt.Errorf("relay: replay DB: maxEntries %d", maxEntries)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("relay: replay DB: %w", err)
	}
	db := &ReplayDB{dir: dir, maxEntries: maxEntries, epochs: map[uint64]*epochTags{}}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("relay: replay DB: %w", err)
	}
	for _, e := range names {
		m := logName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		epoch, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			continue
		}
		if _, err := db.open(epoch); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

func (db *ReplayDB) path(epoch uint64) string {
	return filepath.Join(db.dir, fmt.Sprintf("replay-%d.log", epoch))
}

// open loads (or creates) the log of epoch.
func (db *ReplayDB) open(epoch uint64) (*epochTags, error) {
	if e := db.epochs[epoch]; e != nil {
		return e, nil
	}
	f, err := os.OpenFile(db.path(epoch), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("relay: replay DB: %w", err)
	}
	e := &epochTags{log: f}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("relay: replay DB: read %s: %w", f.Name(), err)
	}
	e.size = int64(len(data)) - int64(len(decodeBatches(data, func(p uint64) { e.set.add(p) })))
	if e.size != int64(len(data)) {
		// Cut a torn tail so new batches follow the last good one.
		if err := f.Truncate(e.size); err != nil {
			f.Close()
			return nil, fmt.Errorf("relay: replay DB: truncate %s: %w", f.Name(), err)
		}
	}
	db.epochs[epoch] = e
	return e, nil
}

// decodeBatches calls add for every prefix of the valid batches at the start
// of data and returns the rest (a torn or corrupt tail).
func decodeBatches(data []byte, add func(uint64)) []byte {
	for len(data) >= 8 {
		n := binary.BigEndian.Uint32(data)
		if n == 0 || uint64(n) > uint64(len(data)-8)/8 {
			return data
		}
		body := data[8 : 8+8*int(n)]
		if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(data[4:]) {
			return data
		}
		for i := 0; i < len(body); i += 8 {
			add(binary.BigEndian.Uint64(body[i:]))
		}
		data = data[8+len(body):]
	}
	return data
}

// Tag is one replay check: the epoch of the key that unwrapped the packet
// and the first 8 bytes of its replay tag. Check sets Seen.
type Tag struct {
	Epoch  uint64
	Prefix uint64
	Seen   bool
	Err    error
}

// Check looks up every tag, adds the new ones, and makes them durable (one
// write and one fsync per epoch touched) before returning. A tag repeated
// within the batch is seen from its second occurrence on. Tags that could
// not be made durable get Err set and must be dropped.
func (db *ReplayDB) Check(tags []Tag) {
	touched := map[uint64][]uint64{}
	held := db.Len()
	for i := range tags {
		t := &tags[i]
		e, err := db.open(t.Epoch)
		if err != nil {
			t.Err = err
			continue
		}
		if e.set.contains(t.Prefix) {
			t.Seen = true
			continue
		}
		if held >= db.maxEntries {
			t.Err = ErrReplayFull
			continue
		}
		e.set.add(t.Prefix)
		held++
		touched[t.Epoch] = append(touched[t.Epoch], t.Prefix)
	}
	for epoch, prefixes := range touched {
		if err := db.append(db.epochs[epoch], prefixes); err != nil {
			for i := range tags {
				if tags[i].Epoch == epoch && !tags[i].Seen && tags[i].Err == nil {
					tags[i].Err = err
				}
			}
		}
	}
}

// append writes one batch to e's log and fsyncs it.
func (db *ReplayDB) append(e *epochTags, prefixes []uint64) error {
	db.buf = db.buf[:0]
	db.buf = binary.BigEndian.AppendUint32(db.buf, uint32(len(prefixes)))
	db.buf = append(db.buf, 0, 0, 0, 0)
	for _, p := range prefixes {
		db.buf = binary.BigEndian.AppendUint64(db.buf, p)
	}
	binary.BigEndian.PutUint32(db.buf[4:], crc32.Checksum(db.buf[8:], crcTable))
	if _, err := e.log.WriteAt(db.buf, e.size); err != nil {
		return fmt.Errorf("relay: replay DB: write: %w", err)
	}
	if err := e.log.Sync(); err != nil {
		return fmt.Errorf("relay: replay DB: fsync: %w", err)
	}
	e.size += int64(len(db.buf))
	return nil
}

// Rotate drops every epoch older than current−1 (the previous epoch stays
// for its grace period) and deletes their logs.
func (db *ReplayDB) Rotate(current uint64) error {
	var errs []error
	for epoch, e := range db.epochs {
		if epoch+1 < current {
			e.log.Close()
			if err := os.Remove(db.path(epoch)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			delete(db.epochs, epoch)
		}
	}
	return errors.Join(errs...)
}

// Epochs returns the epochs held, in order.
func (db *ReplayDB) Epochs() []uint64 {
	out := make([]uint64, 0, len(db.epochs))
	for e := range db.epochs {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

// Len returns the number of tags held.
func (db *ReplayDB) Len() int {
	n := 0
	for _, e := range db.epochs {
		n += e.set.n
	}
	return n
}

// MemoryBytes returns the memory the in-memory sets hold.
func (db *ReplayDB) MemoryBytes() int {
	n := 0
	for _, e := range db.epochs {
		n += e.set.bytes()
	}
	return n
}

// Close closes the logs.
func (db *ReplayDB) Close() error {
	var errs []error
	for _, e := range db.epochs {
		errs = append(errs, e.log.Close())
	}
	return errors.Join(errs...)
}
