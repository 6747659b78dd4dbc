package relay

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
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
	var s tagSet
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
	if per := float64(s.bytes()) / n; per > 32 {
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

// TestReplayDBSurvivesKill: every tag a child process had acknowledged (its
// Check returned) before SIGKILL is still seen after reopening.
func TestReplayDBSurvivesKill(t *testing.T) {
	if dir := os.Getenv("STRATA_REPLAY_CHILD"); dir != "" {
		db, err := OpenReplayDB(dir, 1<<30)
		if err != nil {
			os.Exit(1)
		}
		w := bufio.NewWriter(os.Stdout)
		for p := uint64(1); ; p++ {
			tags := []Tag{{Epoch: 7, Prefix: p * 0x9e3779b97f4a7c15}}
			db.Check(tags)
			if tags[0].Err != nil {
				os.Exit(1)
			}
			fmt.Fprintln(w, p)
			w.Flush()
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplayDBSurvivesKill$")
	cmd.Env = append(os.Environ(), "STRATA_REPLAY_CHILD="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() && acked < 300 {
		if v, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
			acked = v
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if acked < 300 {
		t.Fatalf("child acknowledged %d tags", acked)
	}
	db, err := OpenReplayDB(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for p := uint64(1); p <= acked; p++ {
		if tags := check(t, db, 7, p*0x9e3779b97f4a7c15); !tags[0].Seen {
			t.Fatalf("tag %d of %d acknowledged before the kill was forgotten", p, acked)
		}
	}
}

func FuzzDecodeBatches(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x0b, 0x10, 0x6d, 0x74, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		rest := decodeBatches(data, func(uint64) { n++ })
		if len(rest) > len(data) || 8*n > len(data) {
			t.Fatalf("decoded %d prefixes from %d bytes, %d left", n, len(data), len(rest))
		}
	})
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
