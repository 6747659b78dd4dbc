package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"testing/iotest"
)

// encodeLog returns a log of one batch per element of batches.
func encodeLog(batches ...[]uint64) []byte {
	var out []byte
	for _, b := range batches {
		start := len(out)
		out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
		out = append(out, 0, 0, 0, 0)
		for _, p := range b {
			out = binary.BigEndian.AppendUint64(out, p)
		}
		binary.BigEndian.PutUint32(out[start+4:], crc32.Checksum(out[start+8:], crcTable))
	}
	return out
}

// decodeWhole is the reference decoder: the whole log in memory, as
// start-up read it before it streamed.
func decodeWhole(data []byte, maxBatch int) (prefixes []uint64, valid int) {
	for len(data)-valid >= 8 {
		rest := data[valid:]
		n := binary.BigEndian.Uint32(rest)
		if n == 0 || int64(n) > int64(maxBatch) || uint64(n) > uint64(len(rest)-8)/8 {
			break
		}
		body := rest[8 : 8+8*int(n)]
		if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(rest[4:]) {
			break
		}
		for i := 0; i < len(body); i += 8 {
			prefixes = append(prefixes, binary.BigEndian.Uint64(body[i:]))
		}
		valid += 8 + len(body)
	}
	return prefixes, valid
}

func readAll(t testing.TB, r io.Reader, maxBatch int) ([]uint64, int64) {
	t.Helper()
	var got []uint64
	valid, err := readBatches(r, maxBatch, func(p uint64) { got = append(got, p) })
	if err != nil {
		t.Fatal(err)
	}
	return got, valid
}

func randomPrefixes(rnd *rand.Rand, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = rnd.Uint64() | 1
	}
	return out
}

// TestReplayDBStreamsALogLargerThanItsBuffer: a log of 8.8 MB — 17 times
// the largest batch and 140 times the read buffer, with a commit too large
// for one batch — is read with under 1 MB allocated, and the reopened DB
// holds every tag and no other.
func TestReplayDBStreamsALogLargerThanItsBuffer(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenReplayDB(dir, 1<<22)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(13, 14))
	var all []uint64
	for range 100 {
		all = append(all, check(t, db, 3, randomPrefixes(rnd, 10_000)...)[0].Prefix)
	}
	big := randomPrefixes(rnd, 2*maxLogBatch+5) // one commit, three batches
	check(t, db, 3, big...)
	db.Close()
	path := filepath.Join(dir, "replay-3.log")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(100*(8+80_000) + 3*8 + 8*len(big)); st.Size() != want {
		t.Fatalf("log has %d bytes, want %d", st.Size(), want)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var before, after runtime.MemStats
	n := 0
	runtime.ReadMemStats(&before)
	valid, err := readBatches(f, maxLogBatch, func(uint64) { n++ })
	runtime.ReadMemStats(&after)
	if err != nil || valid != st.Size() || n != 1_000_000+len(big) {
		t.Fatalf("read %d prefixes, %d of %d bytes valid, err %v", n, valid, st.Size(), err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("reading a %d-byte log allocated %d bytes", st.Size(), alloc)
	}

	db, err = OpenReplayDB(dir, 1<<22)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Len() != n {
		t.Fatalf("reopened DB holds %d tags, want %d", db.Len(), n)
	}
	for _, tg := range check(t, db, 3, append(all, big...)...) {
		if !tg.Seen {
			t.Fatalf("tag %x forgotten", tg.Prefix)
		}
	}
	for _, tg := range check(t, db, 3, randomPrefixes(rnd, 10_000)...) {
		if tg.Seen {
			t.Fatalf("fresh tag %x taken for a replay", tg.Prefix)
		}
	}
}

// TestReplayDBKeepsEveryCompleteBatchOfATornLog cuts a log at every byte
// and corrupts each batch in turn, as a crash in the middle of a write or
// a bad sector would: the DB opens without panicking, keeps exactly the
// batches before the damage, cuts the rest off the file, and appends after
// the last good batch.
func TestReplayDBKeepsEveryCompleteBatchOfATornLog(t *testing.T) {
	rnd := rand.New(rand.NewPCG(15, 16))
	batches := [][]uint64{randomPrefixes(rnd, 3), randomPrefixes(rnd, 1), randomPrefixes(rnd, 40), randomPrefixes(rnd, 2)}
	log := encodeLog(batches...)
	ends := []int{0}
	for _, b := range batches {
		ends = append(ends, ends[len(ends)-1]+8+8*len(b))
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "replay-9.log")
	fresh := rnd.Uint64()
	reopen := func(name string, data []byte, keep int) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := OpenReplayDB(dir, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer db.Close()
		var want []uint64
		for _, b := range batches[:keep] {
			want = append(want, b...)
		}
		if db.Len() != len(want) {
			t.Fatalf("%s: %d tags kept, want %d", name, db.Len(), len(want))
		}
		if st, _ := os.Stat(path); st.Size() != int64(ends[keep]) {
			t.Fatalf("%s: log cut to %d bytes, want %d", name, st.Size(), ends[keep])
		}
		if len(want) > 0 {
			for _, tg := range check(t, db, 9, want...) {
				if !tg.Seen {
					t.Fatalf("%s: tag of a complete batch forgotten", name)
				}
			}
		}
		check(t, db, 9, fresh)
		db.Close()
		if got, valid := decodeWhole(mustRead(t, path), maxLogBatch); valid != ends[keep]+16 || got[len(got)-1] != fresh {
			t.Fatalf("%s: batch appended after the cut is not read back", name)
		}
	}
	for cut := 0; cut <= len(log); cut++ {
		keep := 0
		for keep < len(batches) && ends[keep+1] <= cut {
			keep++
		}
		reopen("cut at "+strconv.Itoa(cut), log[:cut], keep)
	}
	for k := range batches {
		at := ends[k]
		for _, c := range []struct {
			name string
			edit func([]byte)
		}{
			{"body byte flipped", func(b []byte) { b[at+8] ^= 0x40 }},
			{"CRC flipped", func(b []byte) { b[at+4] ^= 1 }},
			{"count zero", func(b []byte) { binary.BigEndian.PutUint32(b[at:], 0) }},
			{"count over the maximum", func(b []byte) { binary.BigEndian.PutUint32(b[at:], maxLogBatch+1) }},
			{"count past the end", func(b []byte) { binary.BigEndian.PutUint32(b[at:], 1<<32-1) }},
		} {
			data := slices.Clone(log)
			c.edit(data)
			reopen("batch "+strconv.Itoa(k)+": "+c.name, data, k)
		}
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestReadBatchesReportsReadErrors: a failing read is an error, not a torn
// tail (cutting the log there would forget acknowledged tags).
func TestReadBatchesReportsReadErrors(t *testing.T) {
	boom := errors.New("disk read failed")
	log := encodeLog([]uint64{1, 2, 3}, []uint64{4})
	for cut := range len(log) + 1 {
		_, err := readBatches(io.MultiReader(bytes.NewReader(log[:cut]), iotest.ErrReader(boom)), maxLogBatch, func(uint64) {})
		if !errors.Is(err, boom) {
			t.Fatalf("read error after %d bytes: got %v", cut, err)
		}
	}
}

// TestReplayDBSyncsTheDirectory: a commit to a new epoch's log is
// acknowledged only after the directory holding the new file was fsynced,
// and removing logs fsyncs it again.
func TestReplayDBSyncsTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "replay")
	db, err := OpenReplayDB(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	syncs := db.dirSyncs
	check(t, db, 1, 5)
	if db.dirSyncs != syncs+1 {
		t.Fatalf("new log: %d directory fsyncs, want 1", db.dirSyncs-syncs)
	}
	check(t, db, 1, 6)
	check(t, db, 2, 6)
	if db.dirSyncs != syncs+2 {
		t.Fatalf("one more new log: %d directory fsyncs in all, want 2", db.dirSyncs-syncs)
	}
	if err := db.Rotate(2); err != nil || db.dirSyncs != syncs+2 {
		t.Fatalf("rotation removing nothing: err %v, %d directory fsyncs", err, db.dirSyncs-syncs)
	}
	if err := db.Rotate(3); err != nil || db.dirSyncs != syncs+3 {
		t.Fatalf("rotation removing a log: err %v, %d directory fsyncs", err, db.dirSyncs-syncs)
	}
}

// FuzzDecodeBatches checks the streaming log reader against the whole-buffer
// reference decoder on arbitrary logs, read whole and one byte at a time,
// with the real batch limit and a tiny one, and that the valid part it
// reports decodes to itself.
func FuzzDecodeBatches(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x0b, 0x10, 0x6d, 0x74, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(encodeLog([]uint64{1, 2, 3}, []uint64{4}, []uint64{5, 6, 7, 8, 9}))
	f.Add(append(encodeLog([]uint64{1, 2}), 0, 0, 0, 2, 9, 9))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, maxBatch := range []int{maxLogBatch, 3} {
			want, wantValid := decodeWhole(data, maxBatch)
			for _, r := range []io.Reader{bytes.NewReader(data), iotest.OneByteReader(bytes.NewReader(data))} {
				got, valid := readAll(t, r, maxBatch)
				if valid != int64(wantValid) || !slices.Equal(got, want) {
					t.Fatalf("max %d: read %d prefixes, %d bytes valid; reference %d, %d", maxBatch, len(got), valid, len(want), wantValid)
				}
			}
			if again, valid := readAll(t, bytes.NewReader(data[:wantValid]), maxBatch); valid != int64(wantValid) || !slices.Equal(again, want) {
				t.Fatalf("max %d: the valid part does not decode to itself", maxBatch)
			}
		}
	})
}
