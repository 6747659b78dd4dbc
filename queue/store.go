package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Database layout (bbolt):
//
//	streams: recipient → fast stream (8) ‖ reliable stream (8) ‖ next fast seq u64 ‖ next reliable seq u64
//	msgs:    message id (16) → record
//	esi:     message id (16) → next ESI u32 (esi.go)
//
// record (version 2): 0x02 ‖ class u8 ‖ created unix ns i64 ‖ deadline unix
// ns i64 ‖ recipient length u16 ‖ recipient ‖ message. Version 1 (written
// before the esi bucket) had a restarts u32 after the class; such a message
// without an esi entry resumes at ESI (restarts+1)·2^16, where the code
// that wrote it would have resumed.
var (
	bucketStreams = []byte("streams")
	bucketMsgs    = []byte("msgs")
)

const (
	recordHeader   = 1 + 1 + 8 + 8 + 2
	recordHeaderV1 = recordHeader + 4
)

var errRecord = errors.New("queue: corrupt record")

func putMessage(tx *bolt.Tx, rq *recipQ, m *outMsg) error {
	sb, err := tx.CreateBucketIfNotExists(bucketStreams)
	if err != nil {
		return err
	}
	mb, err := tx.CreateBucketIfNotExists(bucketMsgs)
	if err != nil {
		return err
	}
	// next = max(stored, this seq + 1): batched transactions may run in
	// any order.
	next := [2]uint64{}
	if old := sb.Get([]byte(rq.to)); len(old) == 32 {
		next[0] = binary.BigEndian.Uint64(old[16:])
		next[1] = binary.BigEndian.Uint64(old[24:])
	}
	ci := classIndex(m.class)
	next[ci] = max(next[ci], m.id.Seq()+1)
	v := make([]byte, 0, 32)
	v = append(v, rq.streams[0][:]...)
	v = append(v, rq.streams[1][:]...)
	v = binary.BigEndian.AppendUint64(v, next[0])
	v = binary.BigEndian.AppendUint64(v, next[1])
	if err := sb.Put([]byte(rq.to), v); err != nil {
		return err
	}
	if err := putMarks(tx, []markWrite{{m.id, m.mark}}); err != nil {
		return err
	}
	return mb.Put(m.id[:], encodeRecord(m))
}

func encodeRecord(m *outMsg) []byte {
	to := m.rq.to
	r := make([]byte, 0, recordHeader+len(to)+len(m.body))
	r = append(r, 2, byte(m.class))
	r = binary.BigEndian.AppendUint64(r, uint64(m.created.UnixNano()))
	r = binary.BigEndian.AppendUint64(r, uint64(m.deadline.UnixNano()))
	r = binary.BigEndian.AppendUint16(r, uint16(len(to)))
	r = append(r, to...)
	return append(r, m.body...)
}

// storedMsg is a decoded record.
type storedMsg struct {
	class             Class
	created, deadline time.Time
	to                Recipient
	body              []byte
	legacyMark        uint32 // version 1: where its writer would have resumed
}

func decodeRecord(r []byte) (storedMsg, error) {
	var sm storedMsg
	if len(r) < 2 || (r[0] != 1 && r[0] != 2) {
		return sm, errRecord
	}
	sm.class = Class(r[1])
	if sm.class != Fast && sm.class != Reliable {
		return sm, errRecord
	}
	h, rest := recordHeader, r[2:]
	if r[0] == 1 {
		if len(r) < recordHeaderV1 {
			return sm, errRecord
		}
		restarts := binary.BigEndian.Uint32(rest)
		sm.legacyMark = uint32(min(uint64(restarts)+1, maxESI>>16) << 16)
		h, rest = recordHeaderV1, rest[4:]
	}
	if len(r) < h {
		return sm, errRecord
	}
	sm.created = time.Unix(0, int64(binary.BigEndian.Uint64(rest)))
	sm.deadline = time.Unix(0, int64(binary.BigEndian.Uint64(rest[8:])))
	n := int(binary.BigEndian.Uint16(rest[16:]))
	if len(r) < h+n+1 {
		return sm, errRecord
	}
	sm.to = Recipient(r[h : h+n])
	sm.body = append([]byte(nil), r[h+n:]...)
	return sm, nil
}

// load reads the streams, the unfinished messages and their ESI marks, and
// queues each message for a full first round from its mark (ESIs never sent
// before). Marks of messages no longer stored are deleted.
func (q *Queue) load() error {
	return q.db.Update(func(tx *bolt.Tx) error {
		sb, err := tx.CreateBucketIfNotExists(bucketStreams)
		if err != nil {
			return err
		}
		mb, err := tx.CreateBucketIfNotExists(bucketMsgs)
		if err != nil {
			return err
		}
		eb, err := tx.CreateBucketIfNotExists(bucketESI)
		if err != nil {
			return err
		}
		err = sb.ForEach(func(k, v []byte) error {
			if len(v) != 32 {
				return fmt.Errorf("%w: stream of %q", errRecord, k)
			}
			rq := &recipQ{to: Recipient(k), active: map[MsgID]*outMsg{}}
			copy(rq.streams[0][:], v[0:8])
			copy(rq.streams[1][:], v[8:16])
			rq.next[0] = binary.BigEndian.Uint64(v[16:])
			rq.next[1] = binary.BigEndian.Uint64(v[24:])
			q.addRecipient(rq)
			return nil
		})
		if err != nil {
			return err
		}
		err = mb.ForEach(func(k, v []byte) error {
			sm, err := decodeRecord(v)
			if err != nil || len(k) != 16 {
				return fmt.Errorf("%w: message %x", errRecord, k)
			}
			rq := q.recips[sm.to]
			if rq == nil {
				return fmt.Errorf("%w: message %x for unknown recipient", errRecord, k)
			}
			g, err := planMessage(len(sm.body), q.cfg.PayloadSize)
			if err != nil {
				return fmt.Errorf("queue: message %x no longer fits the payload size: %w", k, err)
			}
			m := &outMsg{rq: rq, class: sm.class, body: sm.body, g: g, created: sm.created, deadline: sm.deadline, mark: sm.legacyMark, idx: -1}
			copy(m.id[:], k)
			if e := eb.Get(k); e != nil {
				if len(e) != 4 {
					return fmt.Errorf("%w: ESI mark of %x", errRecord, k)
				}
				m.mark = binary.BigEndian.Uint32(e)
			}
			m.nextESI = m.mark
			q.msgs[m.id] = m
			rq.active[m.id] = m
			return nil
		})
		if err != nil {
			return err
		}
		var orphans [][]byte
		err = eb.ForEach(func(k, _ []byte) error {
			if mb.Get(k) == nil {
				orphans = append(orphans, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range orphans {
			if err := eb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
