package mailbox

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func openTestStore(t testing.TB, cfg Config) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mailbox.db")
	s, err := OpenStore(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func newID(t testing.TB) ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestStorePutFetchInOrder(t *testing.T) {
	s, _ := openTestStore(t, Config{})
	box := newID(t)
	if err := s.Create(box, 1, []byte("pubkey")); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(box, 1, nil); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	typ, auth, err := s.Auth(box)
	if err != nil || typ != 1 || string(auth) != "pubkey" {
		t.Fatalf("auth = %d %q %v", typ, auth, err)
	}
	var ids []MessageID
	for i := range 5 {
		id, err := s.Put(box, []byte(fmt.Sprintf("ciphertext %d", i)), t0)
		if err != nil {
			t.Fatal(err)
		}
		if id != MessageIDOf([]byte(fmt.Sprintf("ciphertext %d", i))) {
			t.Fatal("message id is not the hash of the ciphertext")
		}
		ids = append(ids, id)
	}
	// Storing the same ciphertext again is idempotent.
	if _, err := s.Put(box, []byte("ciphertext 0"), t0); err != nil {
		t.Fatal(err)
	}
	msgs, err := s.Fetch(box, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 5 {
		t.Fatalf("fetched %d messages, want 5", len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) || m.ID != ids[i] || string(m.Data) != fmt.Sprintf("ciphertext %d", i) || m.Delivered {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	later, _ := s.Fetch(box, 3, 1)
	if len(later) != 1 || later[0].Seq != 4 {
		t.Fatalf("fetch after 3: %+v", later)
	}
	if _, err := s.Put(newID(t), []byte("x"), t0); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("put to unknown mailbox: %v", err)
	}
	if _, err := s.Fetch(newID(t), 0, 1); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("fetch from unknown mailbox: %v", err)
	}
}

func TestStoreQuotas(t *testing.T) {
	s, _ := openTestStore(t, Config{MaxMessages: 3, MaxBytes: 100})
	box := newID(t)
	s.Create(box, 1, nil)
	for i := range 3 {
		if _, err := s.Put(box, []byte{byte(i)}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(box, []byte("four"), t0); !errors.Is(err, ErrQuota) {
		t.Fatalf("fourth message: %v, want ErrQuota", err)
	}
	other := newID(t)
	s.Create(other, 1, nil)
	if _, err := s.Put(other, make([]byte, 101), t0); !errors.Is(err, ErrQuota) {
		t.Fatalf("oversize message: %v, want ErrQuota", err)
	}
	// Deleting frees quota.
	msgs, _ := s.Fetch(box, 0, 10)
	s.MarkDelivered(box, msgs[0].Seq)
	f, _ := NewDeletionFilter(rand.Reader, 10, 1e-6)
	f.Add(msgs[0].ID)
	if n, err := s.Delete(box, f); err != nil || n != 1 {
		t.Fatalf("delete: %d %v", n, err)
	}
	if _, err := s.Put(box, []byte("four"), t0); err != nil {
		t.Fatalf("after a delete: %v", err)
	}
}

func TestDeletionOnlyTouchesDeliveredMatches(t *testing.T) {
	s, _ := openTestStore(t, Config{})
	box := newID(t)
	s.Create(box, 1, nil)
	for i := range 10 {
		s.Put(box, []byte(fmt.Sprintf("m%d", i)), t0)
	}
	msgs, _ := s.Fetch(box, 0, 100)
	f, err := NewDeletionFilter(rand.Reader, 10, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	// The owner received 0–5; the node delivered 0–3 and 8.
	for _, m := range msgs[:6] {
		f.Add(m.ID)
	}
	if err := s.MarkDelivered(box, 1, 2, 3, 4, 9, 999); err != nil {
		t.Fatal(err)
	}
	n, err := s.Delete(box, f)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("deleted %d, want 4", n)
	}
	left, _ := s.Fetch(box, 0, 100)
	var seqs []uint64
	for _, m := range left {
		seqs = append(seqs, m.Seq)
	}
	if fmt.Sprint(seqs) != "[5 6 7 8 9 10]" {
		t.Fatalf("left %v", seqs)
	}
}

func TestExpireAfterRetention(t *testing.T) {
	s, _ := openTestStore(t, Config{Retention: time.Hour})
	box := newID(t)
	s.Create(box, 1, nil)
	s.Put(box, []byte("old"), t0)
	s.Put(box, []byte("new"), t0.Add(50*time.Minute))
	n, err := s.Expire(t0.Add(70 * time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("expired %d %v, want 1", n, err)
	}
	left, _ := s.Fetch(box, 0, 10)
	if len(left) != 1 || string(left[0].Data) != "new" {
		t.Fatalf("left %+v", left)
	}
	// Quota accounting followed the expiry.
	s2, _ := openTestStore(t, Config{MaxMessages: 1, Retention: time.Hour})
	b2 := newID(t)
	s2.Create(b2, 1, nil)
	s2.Put(b2, []byte("a"), t0)
	s2.Expire(t0.Add(2 * time.Hour))
	if _, err := s2.Put(b2, []byte("b"), t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("quota not released by expiry: %v", err)
	}
}

// TestStoreKeepsAcknowledgedMessagesThroughKill: every message Put
// acknowledged before SIGKILL is there after restart.
func TestStoreKeepsAcknowledgedMessagesThroughKill(t *testing.T) {
	if path := os.Getenv("STRATA_MAILBOX_CHILD"); path != "" {
		storeChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "mailbox.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreKeepsAcknowledgedMessagesThroughKill$")
	cmd.Env = append(os.Environ(), "STRATA_MAILBOX_CHILD="+path)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 150 {
		if len(sc.Text()) == 2*len(MessageID{}) {
			acked = append(acked, sc.Text())
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(acked) < 150 {
		t.Fatalf("child acknowledged only %d messages", len(acked))
	}
	s, err := OpenStore(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msgs, err := s.Fetch(ID{1}, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, m := range msgs {
		have[hex.EncodeToString(m.ID[:])] = true
	}
	for i, id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged message %d lost", i)
		}
	}
}

func storeChild(path string) {
	s, err := OpenStore(path, Config{MaxMessages: 1 << 30})
	if err != nil {
		os.Exit(1)
	}
	s.Create(ID{1}, 1, nil)
	for i := 0; ; i++ {
		id, err := s.Put(ID{1}, []byte(fmt.Sprintf("message %d", i)), time.Now())
		if err != nil {
			os.Exit(1)
		}
		fmt.Println(hex.EncodeToString(id[:]))
	}
}

func TestDeletionFilter(t *testing.T) {
	f, err := NewDeletionFilter(rand.Reader, 1000, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		f.Add(MessageIDOf([]byte(fmt.Sprint("in", i))))
	}
	b, _ := f.MarshalBinary()
	var g DeletionFilter
	if err := g.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if !g.Contains(MessageIDOf([]byte(fmt.Sprint("in", i)))) {
			t.Fatal("false negative")
		}
	}
	fp := 0
	for i := range 200_000 {
		if g.Contains(MessageIDOf([]byte(fmt.Sprint("out", i)))) {
			fp++
		}
	}
	if fp > 2 {
		t.Fatalf("%d false positives in 200,000 at p=1e-6", fp)
	}
	if len(b) > 4000 {
		t.Fatalf("filter for 1000 ids at 1e-6 is %d bytes", len(b))
	}
	for _, bad := range [][]byte{nil, make([]byte, 16), append([]byte{0}, make([]byte, 16)...), append([]byte{33}, make([]byte, 16)...), append([]byte{3}, make([]byte, 19)...)} {
		if err := g.UnmarshalBinary(bad); !errors.Is(err, ErrFilter) {
			t.Errorf("filter %x: %v", bad, err)
		}
	}
	if _, err := NewDeletionFilter(rand.Reader, 0, 0.01); !errors.Is(err, ErrFilter) {
		t.Error("empty filter accepted")
	}
}

func FuzzDeletionFilter(f *testing.F) {
	g, _ := NewDeletionFilter(rand.Reader, 10, 1e-3)
	b, _ := g.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var g DeletionFilter
		if err := g.UnmarshalBinary(b); err != nil {
			return
		}
		g.Contains(MessageID{})
		out, _ := g.MarshalBinary()
		if string(out) != string(b) {
			t.Fatal("filter does not round-trip")
		}
	})
}

// BenchmarkStorePut measures durable message stores (each waits for its
// fsync; concurrent puts share one).
func BenchmarkStorePut(b *testing.B) {
	s, _ := openTestStore(b, Config{MaxMessages: 1 << 30, MaxBytes: 1 << 40})
	box := newID(b)
	s.Create(box, 1, nil)
	msg := make([]byte, 2000)
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		m := append([]byte(nil), msg...)
		rand.Read(m[:16])
		var i uint64
		for pb.Next() {
			i++
			m[16], m[17], m[18] = byte(i), byte(i>>8), byte(i>>16)
			if _, err := s.Put(box, m, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
