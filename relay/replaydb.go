package relay

import (
	"bufio"
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
// In memory each epoch is an exact set of 64-bit tag prefixes (tagSet,
// indexed by a keyed hash the sender cannot predict): a false positive
// needs two of the epoch's n tags to share 64 bits, which for a lookup
// happens with probability n/2⁶⁴ (4·10⁻¹² for an hour at 20,000
// packets/s), and memory is at most 16 bytes an entry. On disk each epoch
// is an append-only log of batches; a group commit is one write of one or
// more batches and one fsync before its packets go on:
//
//	batch = count (4, big-endian, 1 … maxLogBatch) ‖ CRC-32C of the prefixes (4) ‖ count × prefix (8)
//
// Start-up streams each log through a read buffer and one batch. A batch
// torn by a crash fails its CRC or length and is cut off, with everything
// after it; the tags in it were never acknowledged, so their packets were
// never forwarded. A commit to a new log is acknowledged only once the
// log's directory entry is fsynced too. Epochs older than the previous one are deleted by
// Rotate. The DB refuses (ErrReplayFull) to grow past maxEntries rather
// than forget or panic.
//
// A ReplayDB is used by one goroutine at a time (the relay's replay stage).
type ReplayDB struct {
	dir        string
	maxEntries int
	epochs     map[uint64]*epochTags
	buf        []byte
	dirSyncs   int // directory fsyncs done (read by tests)
}

type epochTags struct {
	set  *tagSet
	log  *os.File
	size int64 // valid bytes in the log
	// unsynced: the log was created and its directory entry not yet
	// fsynced; the first commit does it before acknowledging.
	unsynced bool
}

// maxLogBatch bounds a batch's count, and so the buffer start-up reads a
// log through (512 KiB) whatever the log's size. A commit of more new tags
// for one epoch is written as several batches (still one write, one fsync).
// The relay's commits hold at most maxReplayBatch tags, far fewer.
const maxLogBatch = 1 << 16

// logReadBuffer is the read buffer start-up streams a log through.
const logReadBuffer = 64 << 10

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
	db := &ReplayDB{dir: dir, maxEntries: maxEntries, epochs: map[uint64]*epochTags{}}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("relay: replay DB: %w", err)
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	}
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
	// A log a crashed process created may still lack a durable directory
	// entry; new commits to it will be acknowledged, so make it durable.
	if err := db.syncDir(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// syncDir fsyncs dir, so that files created, removed or renamed in it
// survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("relay: replay DB: fsync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("relay: replay DB: fsync directory %s: %w", dir, err)
	}
	return nil
}

func (db *ReplayDB) syncDir() error {
	if err := syncDir(db.dir); err != nil {
		return err
	}
	db.dirSyncs++
	return nil
}

func (db *ReplayDB) path(epoch uint64) string {
	return filepath.Join(db.dir, fmt.Sprintf("replay-%d.log", epoch))
}

// open loads (or creates) the log of epoch.
func (db *ReplayDB) open(epoch uint64) (*epochTags, error) {
	if e := db.epochs[epoch]; e != nil {
		return e, nil
	}
	e := &epochTags{set: newTagSet()}
	f, err := os.OpenFile(db.path(epoch), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(db.path(epoch), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		e.unsynced = true
	}
	if err != nil {
		return nil, fmt.Errorf("relay: replay DB: %w", err)
	}
	e.log = f
	if !e.unsynced {
		if err := e.load(); err != nil {
			f.Close()
			return nil, err
		}
	}
	db.epochs[epoch] = e
	return e, nil
}

// load reads e's log into its set and cuts a torn tail, so that new batches
// follow the last good one.
func (e *epochTags) load() error {
	st, err := e.log.Stat()
	if err != nil {
		return fmt.Errorf("relay: replay DB: %w", err)
	}
	e.size, err = readBatches(e.log, maxLogBatch, func(p uint64) { e.set.add(p) })
	if err != nil {
		return fmt.Errorf("relay: replay DB: read %s: %w", e.log.Name(), err)
	}
	if e.size != st.Size() {
		if err := e.log.Truncate(e.size); err != nil {
			return fmt.Errorf("relay: replay DB: truncate %s: %w", e.log.Name(), err)
		}
		if err := e.log.Sync(); err != nil {
			return fmt.Errorf("relay: replay DB: fsync %s: %w", e.log.Name(), err)
		}
	}
	return nil
}

// readBatches streams the log in r: it calls add for every prefix of the
// valid batches at its start, each only once its batch's CRC has been
// checked, and returns their length in bytes. Reading stops cleanly at the
// first torn or corrupt batch (short, count 0 or above maxBatch, wrong
// CRC): what follows it is the tail to cut. A read error is returned as
// such, never taken for a torn tail. Memory: a read buffer and one batch.
func readBatches(r io.Reader, maxBatch int, add func(uint64)) (int64, error) {
	br := bufio.NewReaderSize(r, logReadBuffer)
	var (
		hdr   [8]byte
		body  []byte
		valid int64
	)
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return valid, endOfLog(err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || uint64(n) > uint64(maxBatch) {
			return valid, nil
		}
		if cap(body) < 8*int(n) {
			body = make([]byte, 8*int(n))
		}
		body = body[:8*int(n)]
		if _, err := io.ReadFull(br, body); err != nil {
			return valid, endOfLog(err)
		}
		if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			return valid, nil
		}
		for i := 0; i < len(body); i += 8 {
			add(binary.BigEndian.Uint64(body[i:]))
		}
		valid += int64(8 + len(body))
	}
}

// endOfLog maps the end of the file (inside a batch: a torn tail) to nil.
func endOfLog(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
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

// append writes prefixes to e's log as batches of at most maxLogBatch, in
// one write, and fsyncs the log (and, for a new log, its directory).
func (db *ReplayDB) append(e *epochTags, prefixes []uint64) error {
	db.buf = db.buf[:0]
	for len(prefixes) > 0 {
		batch := prefixes[:min(len(prefixes), maxLogBatch)]
		prefixes = prefixes[len(batch):]
		start := len(db.buf)
		db.buf = binary.BigEndian.AppendUint32(db.buf, uint32(len(batch)))
		db.buf = append(db.buf, 0, 0, 0, 0)
		for _, p := range batch {
			db.buf = binary.BigEndian.AppendUint64(db.buf, p)
		}
		binary.BigEndian.PutUint32(db.buf[start+4:], crc32.Checksum(db.buf[start+8:], crcTable))
	}
	if _, err := e.log.WriteAt(db.buf, e.size); err != nil {
		return fmt.Errorf("relay: replay DB: write: %w", err)
	}
	if err := e.log.Sync(); err != nil {
		return fmt.Errorf("relay: replay DB: fsync: %w", err)
	}
	if e.unsynced {
		if err := db.syncDir(); err != nil {
			return err
		}
		e.unsynced = false
	}
	e.size += int64(len(db.buf))
	return nil
}

// Rotate drops every epoch older than current−1 (the previous epoch stays
// for its grace period), deletes their logs and fsyncs the directory.
func (db *ReplayDB) Rotate(current uint64) error {
	var errs []error
	removed := false
	for epoch, e := range db.epochs {
		if epoch+1 < current {
			e.log.Close()
			if err := os.Remove(db.path(epoch)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			removed = true
			delete(db.epochs, epoch)
		}
	}
	if removed {
		errs = append(errs, db.syncDir())
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
