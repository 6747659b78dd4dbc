package sim

// event is a message leaving the relay that holds it at time at
// (nanoseconds of simulated time).
type event struct {
	at  int64
	msg int32
}

// eventQueue is a 4-ary min-heap of events by time. Only departures wait in
// it: the sources of new messages are one merged Poisson process whose next
// time the loop keeps aside. A 4-ary heap halves the depth of a binary one
// and keeps a node's children in one cache line.
type eventQueue struct {
	h []event
}

func (q *eventQueue) len() int { return len(q.h) }

// top returns the earliest event; the queue must not be empty.
func (q *eventQueue) top() event { return q.h[0] }

func (q *eventQueue) push(e event) {
	q.h = append(q.h, e)
	i := len(q.h) - 1
	for i > 0 {
		p := (i - 1) / 4
		if q.h[p].at <= e.at {
			break
		}
		q.h[i] = q.h[p]
		i = p
	}
	q.h[i] = e
}

// pop removes and returns the earliest event; the queue must not be empty.
func (q *eventQueue) pop() event {
	top := q.h[0]
	n := len(q.h) - 1
	last := q.h[n]
	q.h = q.h[:n]
	if n == 0 {
		return top
	}
	i := 0
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		m := c
		end := min(c+4, n)
		for j := c + 1; j < end; j++ {
			if q.h[j].at < q.h[m].at {
				m = j
			}
		}
		if q.h[m].at >= last.at {
			break
		}
		q.h[i] = q.h[m]
		i = m
	}
	q.h[i] = last
	return top
}
