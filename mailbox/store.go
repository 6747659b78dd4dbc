package mailbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// IDSize is the size of a mailbox id: 128 random bits, unlinkable to its
// owner.
const IDSize = 16

// ID names a mailbox.
type ID [IDSize]byte

// String returns the id in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Type is a mailbox type id: what kind of messages a mailbox holds (chat,
// data sync, …), so that one server serves several protocols.
type Type uint16

// MessageID names a stored message: the SHA-256 of its ciphertext.
type MessageID [sha256.Size]byte

// MessageIDOf returns the id of ciphertext.
func MessageIDOf(ciphertext []byte) MessageID { return sha256.Sum256(ciphertext) }

// Errors of the store.
var (
	// ErrNoMailbox means the mailbox does not exist.
	ErrNoMailbox = errors.New("mailbox: no such mailbox")
	// ErrExists means a mailbox with that id exists already.
	ErrExists = errors.New("mailbox: mailbox exists")
	// ErrQuota means a write would exceed the mailbox's quota.
	ErrQuota = errors.New("mailbox: quota exceeded")
)

// Config sets a store's limits. The zero value gives the defaults.
type Config struct {
	// Retention is how long a message is kept; default 7 days.
	Retention time.Duration
	// MaxMessages caps the messages of one mailbox; default 10,000.
	MaxMessages int
	// MaxBytes caps the ciphertext bytes of one mailbox; default 64 MiB.
	MaxBytes int64
}

func (c Config) withDefaults() Config {
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.MaxMessages <= 0 {
		c.MaxMessages = 10_000
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 64 << 20
	}
	return c
}

// Message is a stored message.
type Message struct {
	Seq       uint64 // order of arrival in its mailbox, from 1
	ID        MessageID
	Stored    time.Time
	Delivered bool // pushed to the owner at least once
	Data      []byte
}

// Store is a mailbox node's storage: a bbolt file holding each mailbox's
// metadata and messages. Every write returns once it is on disk, so a
// message the node acknowledged survives kill -9. Safe for concurrent use.
type Store struct {
	db  *bolt.DB
	cfg Config
}

var bucketBoxes = []byte("mailboxes")

// Keys inside a mailbox's bucket.
var (
	keyMeta   = []byte("meta")
	bucketMsg = []byte("msgs") // seq (8, big-endian) → record
	bucketIDs = []byte("ids")  // message id → seq
	// bucketUndelivered indexes the messages not yet delivered: seq →
	// empty. Pushes read it, so delivered messages the owner has not
	// deleted (any number of them) never hide a new one.
	bucketUndelivered = []byte("undelivered")
)

// meta is a mailbox's metadata record: type (2) ‖ messages (8) ‖ bytes (8) ‖
// last seq (8) ‖ auth data.
type meta struct {
	typ      Type
	messages uint64
	bytes    uint64
	lastSeq  uint64
	auth     []byte
}

const metaFixed = 2 + 8 + 8 + 8

func (m *meta) encode() []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, metaFixed+len(m.auth)), uint16(m.typ))
	b = binary.BigEndian.AppendUint64(b, m.messages)
	b = binary.BigEndian.AppendUint64(b, m.bytes)
	b = binary.BigEndian.AppendUint64(b, m.lastSeq)
	return append(b, m.auth...)
}

func decodeMeta(b []byte) (*meta, error) {
	if len(b) < metaFixed {
		return nil, fmt.Errorf("mailbox: corrupt metadata of %d bytes", len(b))
	}
	return &meta{
		typ:      Type(binary.BigEndian.Uint16(b)),
		messages: binary.BigEndian.Uint64(b[2:]),
		bytes:    binary.BigEndian.Uint64(b[10:]),
		lastSeq:  binary.BigEndian.Uint64(b[18:]),
		auth:     bytes.Clone(b[metaFixed:]),
	}, nil
}

// record layout: message id (32) ‖ stored (8, unix ns) ‖ delivered (1) ‖ data.
const recordFixed = sha256.Size + 8 + 1

func decodeRecord(seq uint64, b []byte) (Message, error) {
	if len(b) < recordFixed {
		return Message{}, fmt.Errorf("mailbox: corrupt record %d of %d bytes", seq, len(b))
	}
	return Message{
		Seq:       seq,
		ID:        MessageID(b[:sha256.Size]),
		Stored:    time.Unix(0, int64(binary.BigEndian.Uint64(b[sha256.Size:]))),
		Delivered: b[sha256.Size+8] != 0,
		Data:      bytes.Clone(b[recordFixed:]),
	}, nil
}

// OpenStore opens (creating if needed) the store at path.
func OpenStore(path string, cfg Config) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("mailbox: open store %s: %w", path, err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketBoxes, bucketSURBs} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return indexUndelivered(tx)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("mailbox: init store %s: %w", path, err)
	}
	return &Store{db: db, cfg: cfg.withDefaults()}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Create makes mailbox id of type typ; auth is the auth plug-in's data for it
// (for the default plug-in, the mailbox's Ed25519 public key).
func (s *Store) Create(id ID, typ Type, auth []byte) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		boxes := tx.Bucket(bucketBoxes)
		if boxes.Bucket(id[:]) != nil {
			return ErrExists
		}
		box, err := boxes.CreateBucket(id[:])
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketMsg, bucketIDs, bucketUndelivered} {
			if _, err := box.CreateBucket(name); err != nil {
				return err
			}
		}
		return box.Put(keyMeta, (&meta{typ: typ, auth: auth}).encode())
	})
}

// Auth returns the type and auth data of mailbox id.
func (s *Store) Auth(id ID) (Type, []byte, error) {
	var m *meta
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		_, m, err = openBox(tx, id)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return m.typ, m.auth, nil
}

func openBox(tx *bolt.Tx, id ID) (*bolt.Bucket, *meta, error) {
	box := tx.Bucket(bucketBoxes).Bucket(id[:])
	if box == nil {
		return nil, nil, ErrNoMailbox
	}
	m, err := decodeMeta(box.Get(keyMeta))
	return box, m, err
}

// Put stores ciphertext in mailbox id and returns its message id once it is
// durable. Storing a message already there changes nothing and succeeds.
func (s *Store) Put(id ID, ciphertext []byte, now time.Time) (MessageID, error) {
	return s.put(id, nil, ciphertext, now)
}

// PutChecked is Put into a mailbox of type typ: a mailbox of another type
// is ErrNoMailbox. A put into no mailbox (unknown id or another type)
// returns ErrNoMailbox only after a commit of the same batch as a stored
// one (a transaction that writes nothing, sharing the batch's fsync), and
// its message id is set as for a stored one.
func (s *Store) PutChecked(id ID, typ Type, ciphertext []byte, now time.Time) (MessageID, error) {
	return s.put(id, &typ, ciphertext, now)
}

func (s *Store) put(id ID, typ *Type, ciphertext []byte, now time.Time) (MessageID, error) {
	mid := MessageIDOf(ciphertext)
	missing := false
	err := s.db.Batch(func(tx *bolt.Tx) error {
		missing = false
		box, m, err := openBox(tx, id)
		if typ != nil && (errors.Is(err, ErrNoMailbox) || (err == nil && m.typ != *typ)) {
			// Not an error inside the batch: an error would rerun
			// the function alone, in a commit of its own.
			missing = true
			return nil
		}
		if err != nil {
			return err
		}
		ids := box.Bucket(bucketIDs)
		if ids.Get(mid[:]) != nil {
			return nil
		}
		if m.messages+1 > uint64(s.cfg.MaxMessages) || m.bytes+uint64(len(ciphertext)) > uint64(s.cfg.MaxBytes) {
			return fmt.Errorf("%w: mailbox %v holds %d messages, %d bytes (limits %d, %d)", ErrQuota, id, m.messages, m.bytes, s.cfg.MaxMessages, s.cfg.MaxBytes)
		}
		m.lastSeq++
		m.messages++
		m.bytes += uint64(len(ciphertext))
		seq := binary.BigEndian.AppendUint64(nil, m.lastSeq)
		rec := make([]byte, 0, recordFixed+len(ciphertext))
		rec = append(rec, mid[:]...)
		rec = binary.BigEndian.AppendUint64(rec, uint64(now.UnixNano()))
		rec = append(rec, 0)
		rec = append(rec, ciphertext...)
		if err := box.Bucket(bucketMsg).Put(seq, rec); err != nil {
			return err
		}
		if err := ids.Put(mid[:], seq); err != nil {
			return err
		}
		if err := box.Bucket(bucketUndelivered).Put(seq, nil); err != nil {
			return err
		}
		return box.Put(keyMeta, m.encode())
	})
	if err != nil {
		return MessageID{}, err
	}
	if missing {
		return mid, ErrNoMailbox
	}
	return mid, nil
}

// Fetch returns up to limit messages of mailbox id with Seq > after, oldest
// first.
func (s *Store) Fetch(id ID, after uint64, limit int) ([]Message, error) {
	var out []Message
	err := s.db.View(func(tx *bolt.Tx) error {
		box, _, err := openBox(tx, id)
		if err != nil {
			return err
		}
		c := box.Bucket(bucketMsg).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(out) < limit; k, v = c.Next() {
			msg, err := decodeRecord(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, msg)
		}
		return nil
	})
	return out, err
}

// Undelivered returns up to limit messages of mailbox id not yet marked
// delivered, oldest first. It reads the index of undelivered messages, so
// its cost does not grow with the delivered messages kept.
func (s *Store) Undelivered(id ID, limit int) ([]Message, error) {
	var out []Message
	err := s.db.View(func(tx *bolt.Tx) error {
		box, _, err := openBox(tx, id)
		if err != nil {
			return err
		}
		msgs := box.Bucket(bucketMsg)
		c := box.Bucket(bucketUndelivered).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			v := msgs.Get(k)
			if v == nil || len(k) != 8 {
				return fmt.Errorf("mailbox: undelivered index of %v names a missing message", id)
			}
			msg, err := decodeRecord(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, msg)
		}
		return nil
	})
	return out, err
}

// MarkDelivered records that the messages seqs of mailbox id were pushed to
// their owner; only delivered messages are subject to deletion filters.
func (s *Store) MarkDelivered(id ID, seqs ...uint64) error {
	return s.MarkDeliveredMany(map[ID][]uint64{id: seqs})
}

// MarkDeliveredMany is MarkDelivered for several mailboxes in one
// transaction; mailboxes that no longer exist are skipped.
func (s *Store) MarkDeliveredMany(marks map[ID][]uint64) error {
	return s.Flush(marks, nil)
}

// Flush marks messages delivered (as MarkDeliveredMany) and removes spent
// SURBs from the stock (keys from AddSURBs) in one transaction.
func (s *Store) Flush(marks map[ID][]uint64, spent [][]byte) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		if err := deleteSURBs(tx, spent); err != nil {
			return err
		}
		for id, seqs := range marks {
			box, _, err := openBox(tx, id)
			if errors.Is(err, ErrNoMailbox) {
				continue
			}
			if err != nil {
				return err
			}
			msgs := box.Bucket(bucketMsg)
			for _, seq := range seqs {
				k := binary.BigEndian.AppendUint64(nil, seq)
				v := msgs.Get(k)
				if len(v) < recordFixed || v[sha256.Size+8] == 1 {
					continue
				}
				rec := bytes.Clone(v)
				rec[sha256.Size+8] = 1
				if err := msgs.Put(k, rec); err != nil {
					return err
				}
				if err := box.Bucket(bucketUndelivered).Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Delete removes the delivered messages of mailbox id that f contains and
// returns how many.
func (s *Store) Delete(id ID, f *DeletionFilter) (int, error) {
	n := 0
	err := s.db.Batch(func(tx *bolt.Tx) error {
		n = 0
		box, m, err := openBox(tx, id)
		if err != nil {
			return err
		}
		c := box.Bucket(bucketMsg).Cursor()
		for k, v := c.First(); k != nil; {
			if len(v) >= recordFixed && v[sha256.Size+8] == 1 && f.Contains(MessageID(v[:sha256.Size])) {
				if err := removeRecord(box, m, c, k, v); err != nil {
					return err
				}
				n++
				k, v = c.Seek(bytes.Clone(k))
				continue
			}
			k, v = c.Next()
		}
		return box.Put(keyMeta, m.encode())
	})
	return n, err
}

// removeRecord deletes the record under the cursor (key k) and updates m.
func removeRecord(box *bolt.Bucket, m *meta, c *bolt.Cursor, k, v []byte) error {
	if err := box.Bucket(bucketIDs).Delete(v[:sha256.Size]); err != nil {
		return err
	}
	if err := box.Bucket(bucketUndelivered).Delete(bytes.Clone(k)); err != nil {
		return err
	}
	m.messages--
	m.bytes -= uint64(len(v) - recordFixed)
	return c.Delete()
}

// Expire deletes every message stored before now − Retention and returns
// how many.
func (s *Store) Expire(now time.Time) (int, error) {
	cutoff := uint64(now.Add(-s.cfg.Retention).UnixNano())
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBoxes).ForEachBucket(func(k []byte) error {
			if len(k) != IDSize {
				return fmt.Errorf("mailbox: corrupt mailbox key of %d bytes", len(k))
			}
			box, m, err := openBox(tx, ID(k))
			if err != nil {
				return err
			}
			c := box.Bucket(bucketMsg).Cursor()
			for k, v := c.First(); k != nil && len(v) >= recordFixed && binary.BigEndian.Uint64(v[sha256.Size:]) < cutoff; k, v = c.First() {
				if err := removeRecord(box, m, c, k, v); err != nil {
					return err
				}
				n++
			}
			return box.Put(keyMeta, m.encode())
		})
	})
	return n, err
}

// indexUndelivered builds the undelivered index of mailboxes written before
// it existed.
func indexUndelivered(tx *bolt.Tx) error {
	boxes := tx.Bucket(bucketBoxes)
	return boxes.ForEachBucket(func(k []byte) error {
		box := boxes.Bucket(k)
		if box.Bucket(bucketUndelivered) != nil {
			return nil
		}
		idx, err := box.CreateBucket(bucketUndelivered)
		if err != nil {
			return err
		}
		msgs := box.Bucket(bucketMsg)
		if msgs == nil {
			return fmt.Errorf("mailbox: corrupt mailbox %x", k)
		}
		return msgs.ForEach(func(seq, v []byte) error {
			if len(v) >= recordFixed && v[sha256.Size+8] == 0 {
				return idx.Put(seq, nil)
			}
			return nil
		})
	})
}
