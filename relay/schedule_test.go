package relay

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// recorder collects what a scheduler forwards.
type recorder struct {
	mu   sync.Mutex
	got  []int
	late []time.Duration
	due  map[int]time.Time
}

func (r *recorder) forward(next sphinx.NodeID, buf *[]byte) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	i := int((*buf)[0]) | int((*buf)[1])<<8 | int((*buf)[2])<<16
	r.got = append(r.got, i)
	if d, ok := r.due[i]; ok {
		r.late = append(r.late, now.Sub(d))
	}
}

func tagged(i int) *[]byte {
	b := []byte{byte(i), byte(i >> 8), byte(i >> 16)}
	return &b
}

func TestSchedulerReleasesInDueOrder(t *testing.T) {
	rec := &recorder{due: map[int]time.Time{}}
	s, err := NewScheduler(0, rec.forward, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	order := []int{5, 1, 4, 2, 3}
	for _, i := range order {
		due := now.Add(time.Duration(20+10*i) * time.Millisecond)
		rec.due[i] = due
		if !s.Add(due, sphinx.NodeID{}, tagged(i)) {
			t.Fatal("scheduler refused a packet")
		}
	}
	time.Sleep(150 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.got, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("released %v", rec.got)
	}
	for _, l := range rec.late {
		if l < 0 {
			t.Fatalf("released %v early", -l)
		}
	}
}

func TestSchedulerForwardsDuePacketsAtOnce(t *testing.T) {
	rec := &recorder{}
	s, _ := NewScheduler(0, rec.forward, nil)
	defer s.Close()
	s.Add(time.Now(), sphinx.NodeID{}, tagged(7))
	if len(rec.got) != 1 || s.Len() != 0 {
		t.Fatal("a packet due now was queued")
	}
}

func TestSchedulerDropsWhenFull(t *testing.T) {
	rec := &recorder{}
	s, _ := NewScheduler(2, rec.forward, nil)
	later := time.Now().Add(time.Hour)
	if !s.Add(later, sphinx.NodeID{}, tagged(1)) || !s.Add(later, sphinx.NodeID{}, tagged(2)) {
		t.Fatal("refused below capacity")
	}
	if s.Add(later, sphinx.NodeID{}, tagged(3)) {
		t.Fatal("accepted beyond capacity")
	}
	if held := s.Close(); len(held) != 2 {
		t.Fatalf("Close returned %d held packets", len(held))
	}
}

// schedulerLateness holds n packets with delays of 50 ms + Exp(100 ms) and
// returns how late each left.
func schedulerLateness(t testing.TB, n int) []time.Duration {
	// 50 ms + Exp(100 ms): the whole load falls due within about a second,
	// up to 2,000 packets per millisecond.
	return schedulerLatenessOf(t, n, func(rnd *rand.Rand) time.Duration {
		return 50*time.Millisecond + time.Duration(rnd.ExpFloat64()*float64(100*time.Millisecond))
	})
}

// schedulerLatenessOf adds n packets due after delay() each and returns
// how late each left, sorted.
func schedulerLatenessOf(t testing.TB, n int, delay func(*rand.Rand) time.Duration) []time.Duration {
	var mu sync.Mutex
	late := make([]time.Duration, 0, n)
	s, _ := NewScheduler(n, func(_ sphinx.NodeID, b *[]byte) {
		l := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(*b))))
		mu.Lock()
		late = append(late, l)
		mu.Unlock()
	}, nil)
	defer s.Close()
	rnd := rand.New(rand.NewPCG(1, 1))
	bufs := make([][8]byte, n)
	for i := range n {
		due := time.Now().Add(delay(rnd))
		binary.BigEndian.PutUint64(bufs[i][:], uint64(due.UnixNano()))
		b := bufs[i][:]
		if !s.Add(due, sphinx.NodeID{}, &b) {
			t.Fatal("scheduler full")
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(late) != n {
		t.Fatalf("released %d of %d", len(late), n)
	}
	slices.Sort(late)
	return late
}

// TestSchedulerLatenessUnderLoad holds 20,000 packets and checks that none
// leaves early and that they leave on time. The 1 ms p99 target is measured
// by BenchmarkSchedulerLateness on a quiet machine; this test must also pass
// under -race on a busy one, so it asserts 250 ms (a broken heap or a missed
// wake-up misses that by seconds).
func TestSchedulerLatenessUnderLoad(t *testing.T) {
	const n = 20_000
	late := schedulerLateness(t, n)
	p99 := late[n*99/100]
	t.Logf("lateness p50 %v p99 %v max %v", late[n/2], p99, late[n-1])
	if late[0] < 0 {
		t.Fatal("released early")
	}
	if p99 > 250*time.Millisecond {
		t.Fatalf("p99 lateness %v", p99)
	}
}

// BenchmarkSchedulerLateness reports the p99 lateness of 200,000 held
// packets (target: under 1 ms).
func BenchmarkSchedulerLateness(b *testing.B) {
	for b.Loop() {
		const n = 200_000
		late := schedulerLateness(b, n)
		b.ReportMetric(float64(late[n*99/100])/1e6, "p99-late-ms")
		b.ReportMetric(float64(late[n/2])/1e6, "p50-late-ms")
	}
}

// BenchmarkSchedulerLatenessHeld holds a million packets falling due
// evenly over 10 s (100,000 packets/s, seven times what one relay
// forwards here) and reports how late they leave: the steady state of a
// relay at full load with a deep queue.
func BenchmarkSchedulerLatenessHeld(b *testing.B) {
	for b.Loop() {
		const n = 1_000_000
		late := schedulerLatenessOf(b, n, func(rnd *rand.Rand) time.Duration {
			return time.Second + time.Duration(rnd.Int64N(int64(10*time.Second)))
		})
		b.ReportMetric(float64(late[n*99/100])/1e6, "p99-late-ms")
		b.ReportMetric(float64(late[n*999/1000])/1e6, "p999-late-ms")
		b.ReportMetric(float64(late[n/2])/1e6, "p50-late-ms")
	}
}

// BenchmarkScheduler measures insertion and release through the heap.
func BenchmarkScheduler(b *testing.B) {
	var wg sync.WaitGroup
	buf := tagged(0)
	s, _ := NewScheduler(1<<22, func(sphinx.NodeID, *[]byte) { wg.Done() }, nil)
	defer s.Close()
	rnd := rand.New(rand.NewPCG(2, 2))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		wg.Add(1)
		s.Add(start.Add(time.Duration(rnd.IntN(int(time.Millisecond)))+time.Millisecond), sphinx.NodeID{}, buf)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkt/s")
}
