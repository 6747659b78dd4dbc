package mailbox

import (
	"hash/maphash"
	"sync"
)

// A node's requests wait in one queue per worker. A request goes to the
// worker a keyed hash of its mailbox id picks (the key is drawn per node
// process, so ids cannot be ground to share a worker), and inside the
// queue each mailbox has its own FIFO, served round robin: one mailbox's
// requests run in arrival order, and a flood at some mailboxes delays the
// others by at most one request per flooded mailbox per turn. When a
// queue is full the newest request of the mailbox holding the most is
// dropped (the arriving one if its own mailbox holds the most), so a
// flooder loses its own requests, not other mailboxes'.

// workQueue is one worker's queue.
type workQueue struct {
	mu    sync.Mutex
	boxes map[ID][][]byte
	order []ID // mailboxes with queued requests, in service order
	total int
	limit int
	ready chan struct{} // a request was queued
}

func newWorkQueue(limit int) *workQueue {
	return &workQueue{boxes: map[ID][][]byte{}, limit: limit, ready: make(chan struct{}, 1)}
}

// pick returns the worker of mailbox id.
func pick(seed maphash.Seed, id ID, workers int) int {
	return int(maphash.Comparable(seed, id) % uint64(workers))
}

// add queues b for mailbox id; dropped is false when nothing was dropped.
func (q *workQueue) add(id ID, b []byte) (dropped bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total >= q.limit {
		longest, n := id, len(q.boxes[id])
		for other, reqs := range q.boxes {
			if len(reqs) > n {
				longest, n = other, len(reqs)
			}
		}
		if longest == id {
			return true
		}
		reqs := q.boxes[longest]
		reqs[len(reqs)-1] = nil
		q.set(longest, reqs[:len(reqs)-1])
		q.total--
		dropped = true
	}
	if len(q.boxes[id]) == 0 {
		q.order = append(q.order, id)
	}
	q.boxes[id] = append(q.boxes[id], b)
	q.total++
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return dropped
}

// set replaces id's requests, dropping it from the order when none are
// left. Locked.
func (q *workQueue) set(id ID, reqs [][]byte) {
	if len(reqs) > 0 {
		q.boxes[id] = reqs
		return
	}
	delete(q.boxes, id)
	for i, x := range q.order {
		if x == id {
			q.order = append(q.order[:i], q.order[i+1:]...)
			break
		}
	}
}

// next takes the request to run next: the oldest of the mailbox whose
// turn it is.
func (q *workQueue) next() ([]byte, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return nil, false
	}
	id := q.order[0]
	q.order = q.order[1:]
	reqs := q.boxes[id]
	b := reqs[0]
	reqs[0] = nil
	if reqs = reqs[1:]; len(reqs) > 0 {
		q.boxes[id] = reqs
		q.order = append(q.order, id)
	} else {
		delete(q.boxes, id)
	}
	q.total--
	return b, true
}

// len is how many requests wait.
func (q *workQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}
