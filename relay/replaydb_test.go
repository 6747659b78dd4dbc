package relay

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func check(t testing.TB, db *ReplayDB, epoch uint64, prefixes ...uint64) []Tag {
	t.Helper()
	tags := make([]Tag, len(prefixes))
	for i, p := range prefixes {
		tags[i] = Tag{Epoch: epoch, Prefix: p}
	}
	db.Check(tags)
	for _, tg := range tags {
		if tg.Err != nil {
			t.Fatal(tg.Err)
		}
	}
	return tags
}

func TestTagSetIsExact(t *testing.T) {
	s := newTagSet()
	rnd := rand.New(rand.NewPCG(1, 2))
	const n = 1_000_000
	for i := range n {
		if s.add(rnd.Uint64()) {
			t.Fatalf("fresh prefix %d reported present", i)
		}
	}
	if s.n != n {
		t.Fatalf("set holds %d", s.n)
	}
	if per := float64(s.bytes()) / n; per > 16 {
		t.Fatalf("%.1f bytes an entry", per)
	}
	rnd = rand.New(rand.NewPCG(1, 2))
	for range n {
		v := rnd.Uint64()
		if !s.contains(v) || !s.add(v) {
			t.Fatal("inserted prefix missing")
		}
	}
	if s.contains(0) || s.add(0) || !s.contains(0) {
		t.Fatal("zero prefix mishandled")
	}
}

func TestReplayDBDetectsDuplicatesAndKeepsThemAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenReplayDB(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tags := check(t, db, 5, 1, 2, 3, 2)
	if tags[0].Seen || tags[1].Seen || tags[2].Seen || !tags[3].Seen {
		t.Fatalf("first batch %+v: want the repeated 2 seen only", tags)
	}
	if tags := check(t, db, 5, 3, 4); !tags[0].Seen || tags[1].Seen {
		t.Fatalf("second batch %+v", tags)
	}
	// Another epoch is another key: the same prefix is new there.
	if tags := check(t, db, 6, 3); tags[0].Seen {
		t.Fatal("tag of epoch 5 seen in epoch 6")
	}
	db.Close()
	db, err = OpenReplayDB(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if tags := check(t, db, 5, 1, 2, 3, 4, 9); !tags[0].Seen || !tags[1].Seen || !tags[2].Seen || !tags[3].Seen || tags[4].Seen {
		t.Fatalf("after restart %+v", tags)
	}
	if tags := check(t, db, 6, 3); !tags[0].Seen {
		t.Fatal("epoch 6 forgotten")
	}
}

func TestReplayDBIgnoresTornTail(t *testing.T) {
	dir := t.TempDir()
	db, _ := OpenReplayDB(dir, 1<<20)
	check(t, db, 1, 10, 11)
	check(t, db, 1, 12)
	db.Close()
	path := filepath.Join(dir, "replay-1.log")
	data, _ := os.ReadFile(path)
	for _, tail := range [][]byte{{0, 0, 0}, {0, 0, 0, 2, 1, 2, 3, 4, 9, 9}, append([]byte{0, 0, 0, 1, 0, 0, 0, 0}, 1, 2, 3, 4, 5, 6, 7, 8)} {
		os.WriteFile(path, append(append([]byte(nil), data...), tail...), 0o600)
		db, err := OpenReplayDB(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if tags := check(t, db, 1, 10, 11, 12, 13); !tags[0].Seen || !tags[1].Seen || !tags[2].Seen || tags[3].Seen {
			t.Fatalf("tail %x: %+v", tail, tags)
		}
		db.Close()
		// The torn tail was cut and the new batch follows the good ones.
		db, _ = OpenReplayDB(dir, 1<<20)
		if tags := check(t, db, 1, 13); !tags[0].Seen {
			t.Fatalf("tail %x: batch written after a torn tail was lost", tail)
		}
		db.Close()
		os.WriteFile(path, data, 0o600)
	}
}

func TestReplayDBRotation(t *testing.T) {
	dir := t.TempDir()
	db, _ := OpenReplayDB(dir, 1<<20)
	defer db.Close()
	for e := uint64(1); e <= 4; e++ {
		check(t, db, e, 100)
	}
	if err := db.Rotate(4); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(db.Epochs()); got != "[3 4]" {
		t.Fatalf("epochs after rotation: %s", got)
	}
	for _, e := range []int{1, 2} {
		if _, err := os.Stat(filepath.Join(dir, "replay-"+strconv.Itoa(e)+".log")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("log of epoch %d still there", e)
		}
	}
}

func TestReplayDBRefusesBeyondItsCap(t *testing.T) {
	db, _ := OpenReplayDB(t.TempDir(), 3)
	defer db.Close()
	tags := []Tag{{Epoch: 1, Prefix: 1}, {Epoch: 1, Prefix: 2}, {Epoch: 1, Prefix: 3}, {Epoch: 1, Prefix: 4}, {Epoch: 1, Prefix: 1}}
	db.Check(tags)
	if tags[2].Err != nil || !errors.Is(tags[3].Err, ErrReplayFull) || !tags[4].Seen {
		t.Fatalf("%+v", tags)
	}
}

// killBatches are the commit sizes of TestReplayDBSurvivesKill's child: a
// commit larger than maxLogBatch is several batches in one write, and the
// large writes make a kill in the middle of one likely.
var killBatches = []int{1, 3, 5_000, 1, 2*maxLogBatch + 7}

// TestReplayDBSurvivesKill: a child process commits tags in batches of
// varying size and is killed (SIGKILL) at a random moment, three times, one
// epoch each. Every tag it had acknowledged (its Check returned) is still
// seen after reopening, whatever was torn; nothing beyond its commit in
// progress was added; and the reopened log ends at a batch boundary.
func TestReplayDBSurvivesKill(t *testing.T) {
	tag := func(i uint64) uint64 { return i * 0x9e3779b97f4a7c15 }
	if dir := os.Getenv("STRATA_REPLAY_CHILD"); dir != "" {
		epoch, _ := strconv.ParseUint(os.Getenv("STRATA_REPLAY_EPOCH"), 10, 64)
		db, err := OpenReplayDB(dir, 1<<30)
		if err != nil {
			os.Exit(1)
		}
		w := bufio.NewWriter(os.Stdout)
		var next uint64 = 1
		for round := 0; ; round++ {
			tags := make([]Tag, killBatches[round%len(killBatches)])
			for i := range tags {
				tags[i] = Tag{Epoch: epoch, Prefix: tag(next)}
				next++
			}
			db.Check(tags)
			for _, tg := range tags {
				if tg.Err != nil || tg.Seen {
					os.Exit(1)
				}
			}
			fmt.Fprintln(w, next-1)
			w.Flush()
		}
	}
	// The log sizes at which no commit is half written.
	whole := map[int64]bool{0: true}
	var size int64
	for i := 0; size < 1<<28; i++ {
		k := int64(killBatches[i%len(killBatches)])
		size += 8*k + 8*((k+maxLogBatch-1)/maxLogBatch)
		whole[size] = true
	}
	dir := t.TempDir()
	rnd := rand.New(rand.NewPCG(17, 18))
	acked := map[uint64]uint64{}
	for epoch := uint64(1); epoch <= 3; epoch++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReplayDBSurvivesKill$")
		cmd.Env = append(os.Environ(), "STRATA_REPLAY_CHILD="+dir, "STRATA_REPLAY_EPOCH="+strconv.FormatUint(epoch, 10))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var last atomic.Uint64
		reached, done := make(chan struct{}), make(chan struct{})
		go func(notify chan struct{}) {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if v, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
					if last.Store(v); v >= 300_000 && notify != nil {
						close(notify)
						notify = nil
					}
				}
			}
		}(reached)
		select {
		case <-reached:
		case <-done:
			t.Fatalf("child exited having acknowledged %d tags", last.Load())
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatalf("child acknowledged %d tags in a minute", last.Load())
		}
		// Aim the kill at a write in progress (the log's size between two
		// commits' ends); failing that, kill at a random moment.
		path := filepath.Join(dir, "replay-"+strconv.FormatUint(epoch, 10)+".log")
		for start := time.Now(); time.Since(start) < 2*time.Second; {
			if st, err := os.Stat(path); err == nil && !whole[st.Size()] {
				break
			}
		}
		if rnd.IntN(2) == 0 {
			time.Sleep(time.Duration(rnd.IntN(200)) * time.Microsecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-done // the child's last acknowledgements are still in the pipe
		cmd.Wait()
		acked[epoch] = last.Load()
		data := mustRead(t, path)
		_, valid := decodeWhole(data, maxLogBatch)
		t.Logf("epoch %d: killed with %d bytes of the log past its last whole batch", epoch, len(data)-valid)
	}
	db, err := OpenReplayDB(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for epoch := uint64(1); epoch <= 3; epoch++ {
		held := db.epochs[epoch].set.n
		if held < int(acked[epoch]) || held > int(acked[epoch])+slices.Max(killBatches) {
			t.Fatalf("epoch %d: %d tags held, %d acknowledged", epoch, held, acked[epoch])
		}
		tags := make([]Tag, acked[epoch])
		for i := range tags {
			tags[i] = Tag{Epoch: epoch, Prefix: tag(uint64(i) + 1)}
		}
		db.Check(tags)
		for i, tg := range tags {
			if tg.Err != nil || !tg.Seen {
				t.Fatalf("epoch %d: tag %d of %d acknowledged before the kill was forgotten (%v)", epoch, i+1, acked[epoch], tg.Err)
			}
		}
		data := mustRead(t, filepath.Join(dir, "replay-"+strconv.FormatUint(epoch, 10)+".log"))
		if _, valid := decodeWhole(data, maxLogBatch); valid != len(data) {
			t.Fatalf("epoch %d: log has %d bytes after reopening, %d of them valid", epoch, len(data), valid)
		}
	}
}

// BenchmarkReplayDB measures group commits of 64 fresh tags and 64 lookups
// of seen ones, and reports memory per entry.
func BenchmarkReplayDB(b *testing.B) {
	db, err := OpenReplayDB(b.TempDir(), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rnd := rand.New(rand.NewPCG(3, 4))
	tags := make([]Tag, 128)
	var seen []uint64
	b.ReportAllocs()
	for b.Loop() {
		for i := range 64 {
			tags[i] = Tag{Epoch: 1, Prefix: rnd.Uint64()}
			seen = append(seen, tags[i].Prefix)
		}
		for i := 64; i < 128; i++ {
			tags[i] = Tag{Epoch: 1, Prefix: seen[rnd.IntN(len(seen))]}
		}
		db.Check(tags)
	}
	b.ReportMetric(float64(128*b.N)/b.Elapsed().Seconds(), "checks/s")
	b.ReportMetric(float64(db.MemoryBytes())/float64(db.Len()), "B/entry")
}

// BenchmarkReplayDBTagSet measures the in-memory part of a check, without
// the fsync that dominates BenchmarkReplayDB: inserting fresh tags into a
// set that grows from empty (growth included), and looking up seen tags in a
// set of 4 M entries (tables far larger than the CPU caches, as at load).
func BenchmarkReplayDBTagSet(b *testing.B) {
	b.Run("insert", func(b *testing.B) {
		s := newTagSet()
		rnd := rand.New(rand.NewPCG(5, 6))
		b.ReportAllocs()
		for b.Loop() {
			s.add(rnd.Uint64())
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
		b.ReportMetric(float64(s.bytes())/float64(s.n), "B/entry")
	})
	b.Run("lookup", func(b *testing.B) {
		s := newTagSet()
		rnd := rand.New(rand.NewPCG(7, 8))
		seen := make([]uint64, 4<<20)
		for i := range seen {
			seen[i] = rnd.Uint64()
			s.add(seen[i])
		}
		b.ReportAllocs()
		for b.Loop() {
			if !s.contains(seen[rnd.IntN(len(seen))]) {
				b.Fatal("seen tag missing")
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
		b.ReportMetric(float64(s.bytes())/float64(s.n), "B/entry")
	})
}
