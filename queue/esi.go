package queue

import (
	"container/heap"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// Encoding symbol ids (ESIs) and restarts. A message's symbols are a
// deterministic function of its body and ESI, and the receiver keeps only
// distinct ESIs, so a symbol sent twice under one ESI is wasted. The esi
// bucket holds, per message in flight, a durable mark: no symbol at or above
// it has ever left. Put writes it with the message, covering the first
// round at the loss then measured; Run raises it to the end of any round
// that ends above it, in one fsynced transaction for every round planned in
// a pass, before the round enters the ready heap (so before any of its
// symbols can leave); Close
// lowers it to the ESI actually reached. Open resumes every message at its
// mark. So the 2^24 ESIs of a message are spent by rounds prepared, never by
// process starts: a clean restart wastes none, a kill -9 at most the unsent
// rest of the rounds prepared before it.

var bucketESI = []byte("esi")

type markWrite struct {
	id   MsgID
	mark uint32
}

func putMarks(tx *bolt.Tx, marks []markWrite) error {
	b, err := tx.CreateBucketIfNotExists(bucketESI)
	if err != nil {
		return err
	}
	for _, w := range marks {
		if err := b.Put(w.id[:], binary.BigEndian.AppendUint32(nil, w.mark)); err != nil {
			return err
		}
	}
	return nil
}

// reserve makes the ESIs of the planned rounds durable (one transaction)
// and queues the rounds. A round whose reservation fails goes back to
// stPrep and is planned again at the next pass.
func (q *Queue) reserve(planned []*outMsg) {
	if len(planned) == 0 {
		return
	}
	var writes []markWrite
	q.mu.Lock()
	for _, m := range planned {
		if m.state != stReserve {
			continue
		}
		if end := m.nextESI + uint32(m.pendSyms); end > m.mark {
			writes = append(writes, markWrite{m.id, end})
		}
	}
	q.mu.Unlock()
	var err error
	if len(writes) > 0 {
		err = q.db.Update(func(tx *bolt.Tx) error { return putMarks(tx, writes) })
		if err != nil {
			q.log.Error("queue: recording encoding symbol ids", "err", err)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range planned {
		if m.state != stReserve {
			continue // finished meanwhile
		}
		end := m.nextESI + uint32(m.pendSyms)
		if err != nil && end > m.mark {
			m.state = stPrep
			m.pendSURBs = nil
			continue
		}
		m.mark = max(m.mark, end)
		m.state = stSending
		q.stats.Rounds++
		if m.roundsSent > 0 {
			q.stats.Resends++
		}
		heap.Push(&q.ready, m)
	}
}

// exactMarks lowers every message's mark to the ESI it reached: nothing
// above has left. Only for Close, once Next is stopped. q.mu held.
func (q *Queue) exactMarks() []markWrite {
	var w []markWrite
	for _, m := range q.msgs {
		if m.nextESI < m.mark {
			m.mark = m.nextESI
			w = append(w, markWrite{m.id, m.nextESI})
		}
	}
	return w
}
