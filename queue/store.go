package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Database layout (bbolt):
//
//	streams: recipient → fast stream (8) ‖ reliable stream (8) ‖ next fast seq u64 ‖ next reliable seq u64
//	msgs:    message id (16) → record
//
// record: version u8 (1) ‖ class u8 ‖ restarts u32 ‖ created unix ns i64 ‖
// deadline unix ns i64 ‖ recipient length u16 ‖ recipient ‖ message.
var (
	bucketStreams = []byte("streams")
	bucketMsgs    = []byte("msgs")
)

const recordHeader = 1 + 1 + 4 + 8 + 8 + 2

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
	return mb.Put(m.id[:], encodeRecord(m))
}

func encodeRecord(m *outMsg) []byte {
	to := m.rq.to
	r := make([]byte, 0, recordHeader+len(to)+len(m.body))
	r = append(r, 1, byte(m.class))
	r = binary.BigEndian.AppendUint32(r, m.restarts)
	r = binary.BigEndian.AppendUint64(r, uint64(m.created.UnixNano()))
	r = binary.BigEndian.AppendUint64(r, uint64(m.deadline.UnixNano()))
	r = binary.BigEndian.AppendUint16(r, uint16(len(to)))
	r = append(r, to...)
	return append(r, m.body...)
}

func decodeRecord(r []byte) (class Class, restarts uint32, created, deadline time.Time, to Recipient, body []byte, err error) {
	if len(r) < recordHeader || r[0] != 1 {
		return 0, 0, time.Time{}, time.Time{}, "", nil, errRecord
	}
	class = Class(r[1])
	if class != Fast && class != Reliable {
		return 0, 0, time.Time{}, time.Time{}, "", nil, errRecord
	}
	restarts = binary.BigEndian.Uint32(r[2:])
	created = time.Unix(0, int64(binary.BigEndian.Uint64(r[6:])))
	deadline = time.Unix(0, int64(binary.BigEndian.Uint64(r[14:])))
	n := int(binary.BigEndian.Uint16(r[22:]))
	if len(r) < recordHeader+n+1 {
		return 0, 0, time.Time{}, time.Time{}, "", nil, errRecord
	}
	to = Recipient(r[recordHeader : recordHeader+n])
	body = append([]byte(nil), r[recordHeader+n:]...)
	return class, restarts, created, deadline, to, body, nil
}

// load reads the streams and the unfinished messages, counts a restart on
// each (so its next round uses encoding symbol ids never sent before) and
// queues them for a first round.
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
		var msgs []*outMsg
		err = mb.ForEach(func(k, v []byte) error {
			class, restarts, created, deadline, to, body, err := decodeRecord(v)
			if err != nil || len(k) != 16 {
				return fmt.Errorf("%w: message %x", errRecord, k)
			}
			rq := q.recips[to]
			if rq == nil {
				return fmt.Errorf("%w: message %x for unknown recipient", errRecord, k)
			}
			g, err := planMessage(len(body), q.cfg.PayloadSize)
			if err != nil {
				return fmt.Errorf("queue: message %x no longer fits the payload size: %w", k, err)
			}
			m := &outMsg{rq: rq, class: class, body: body, g: g, created: created, deadline: deadline, restarts: restarts + 1, idx: -1}
			copy(m.id[:], k)
			m.nextESI = m.restarts << 16
			msgs = append(msgs, m)
			return nil
		})
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := mb.Put(m.id[:], encodeRecord(m)); err != nil {
				return err
			}
			q.msgs[m.id] = m
			m.rq.active[m.id] = m
		}
		return nil
	})
}
