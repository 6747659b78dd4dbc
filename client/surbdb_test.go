package client

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/strata-mix/strata/sphinx"
	bolt "go.etcd.io/bbolt"
)

// newReplyKeys makes real reply keys by building a SURB over a fresh path.
func newReplyKeys(t testing.TB, f *sphinx.Format, n int) []*sphinx.ReplyKeys {
	t.Helper()
	path := make([]sphinx.Hop, 3)
	for i := range path {
		_, pub, err := sphinx.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		path[i].Key = pub
	}
	out := make([]*sphinx.ReplyKeys, n)
	for i := range out {
		_, keys, _, err := f.NewSURB(rand.Reader, path, sphinx.DeliveryToken{}, sphinx.DelayPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = keys
	}
	return out
}

func testFormat(t testing.TB) *sphinx.Format {
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func openStore(t testing.TB, path string) *SURBStore {
	t.Helper()
	s, err := OpenSURBStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSURBStoreTakeIsSingleUse(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "surbs.db"))
	defer s.Close()
	keys := newReplyKeys(t, testFormat(t), 3)
	if err := s.Put(7, keys...); err != nil {
		t.Fatal(err)
	}
	got, epoch, err := s.Take(keys[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if epoch != 7 || got.ID != keys[1].ID || got.Hops() != 3 {
		t.Fatalf("took %x epoch %d hops %d", got.ID, epoch, got.Hops())
	}
	a, _ := got.MarshalBinary()
	b, _ := keys[1].MarshalBinary()
	if string(a) != string(b) {
		t.Fatal("stored keys differ from the ones put")
	}
	if _, _, err := s.Take(keys[1].ID); !errors.Is(err, ErrUnknownSURB) {
		t.Fatalf("second take: %v, want ErrUnknownSURB", err)
	}
	if _, _, err := s.Take(sphinx.SURBID{1, 2, 3}); !errors.Is(err, ErrUnknownSURB) {
		t.Fatalf("unknown id: %v", err)
	}
	if n, _ := s.Len(); n != 2 {
		t.Fatalf("%d SURBs left, want 2", n)
	}
	// The deletion reaches the disk: reopened, the store has no such SURB.
	path := s.db.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	if _, _, err := s.Take(keys[1].ID); !errors.Is(err, ErrUnknownSURB) {
		t.Fatalf("after reopening: %v, want ErrUnknownSURB", err)
	}
	if n, _ := s.Len(); n != 2 {
		t.Fatalf("after reopening: %d SURBs, want 2", n)
	}
}

func TestSURBStoreExpiresWithEpochs(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "surbs.db"))
	defer s.Close()
	f := testFormat(t)
	byEpoch := map[uint64][]*sphinx.ReplyKeys{}
	for epoch := uint64(1); epoch <= 4; epoch++ {
		byEpoch[epoch] = newReplyKeys(t, f, 5)
		if err := s.Put(epoch, byEpoch[epoch]...); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Expire(3)
	if err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("expired %d, want 10", n)
	}
	for epoch, keys := range byEpoch {
		_, _, err := s.Take(keys[0].ID)
		if expired := epoch < 3; expired != errors.Is(err, ErrUnknownSURB) {
			t.Fatalf("epoch %d: take = %v", epoch, err)
		}
	}
}

// TestSURBStoreSurvivesKill: keys whose Put returned are there after the
// process is killed with SIGKILL.
func TestSURBStoreSurvivesKill(t *testing.T) {
	if path := os.Getenv("STRATA_SURBSTORE_CHILD"); path != "" {
		surbStoreChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "surbs.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSURBStoreSurvivesKill$")
	cmd.Env = append(os.Environ(), "STRATA_SURBSTORE_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var durable []sphinx.SURBID
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(durable) < 200 {
		var id sphinx.SURBID
		if b, err := hex.DecodeString(sc.Text()); err == nil && len(b) == len(id) {
			copy(id[:], b)
			durable = append(durable, id)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(durable) < 200 {
		t.Fatalf("child reported only %d SURBs", len(durable))
	}
	s := openStore(t, path)
	defer s.Close()
	for i, id := range durable {
		if _, _, err := s.Take(id); err != nil {
			t.Fatalf("SURB %d of %d acknowledged before the kill: %v", i, len(durable), err)
		}
	}
}

// surbStoreChild puts SURB keys forever, printing each id once Put returned.
func surbStoreChild(path string) {
	s, err := OpenSURBStore(path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	f, _ := sphinx.NewFormat(sphinx.DefaultGeometry())
	for {
		keys := newReplyKeys(&testing.T{}, f, 1)
		if err := s.Put(1, keys...); err != nil {
			fmt.Println("put:", err)
			os.Exit(1)
		}
		fmt.Println(hex.EncodeToString(keys[0].ID[:]))
	}
}

func TestSURBStoreConcurrentUse(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "surbs.db"))
	defer s.Close()
	f := testFormat(t)
	var wg sync.WaitGroup
	for range 8 {
		keys := newReplyKeys(t, f, 20)
		wg.Go(func() {
			for _, k := range keys {
				if err := s.Put(2, k); err != nil {
					t.Error(err)
				}
			}
			for _, k := range keys {
				if _, _, err := s.Take(k.ID); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n, _ := s.Len(); n != 0 {
		t.Fatalf("%d SURBs left", n)
	}
}

func TestOpenSURBStoreRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(path, []byte("this is not a bbolt file, not at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenSURBStore(path); err == nil {
		s.Close()
		t.Fatal("opened a garbage file")
	}
}

// TestSURBStoreRefusesFormatOneRecords: a surbs.db written before reply keys
// were versioned holds format-1 records (id ‖ hops ‖ key ‖ every hop's prk).
// Reopened by this version, Take refuses such a record with an error wrapping
// sphinx.ErrReplyKeysVersion — no keys, no panic, not ErrUnknownSURB — while
// format-2 records in the same file work, and Expire still removes the old
// record with its epoch.
func TestSURBStoreRefusesFormatOneRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "surbs.db")
	s := openStore(t, path)
	good := newReplyKeys(t, testFormat(t), 1)[0]
	if err := s.Put(5, good); err != nil {
		t.Fatal(err)
	}
	old := sphinx.SURBID{0xf1}
	rec := binary.BigEndian.AppendUint64(nil, 5)
	rec = append(rec, old[:]...)
	rec = append(rec, 3) // hops
	rec = append(rec, make([]byte, sphinx.SURBKeySize+3*32)...)
	if _, err := rand.Read(rec[8+sphinx.SURBIDSize+1:]); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketSURBs).Put(old[:], rec); err != nil {
			return err
		}
		return tx.Bucket(bucketByEpoch).Put(epochKey(5, old), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path)
	defer s.Close()
	for range 2 { // refused every time, not consumed as if opened
		keys, _, err := s.Take(old)
		if !errors.Is(err, sphinx.ErrReplyKeysVersion) || errors.Is(err, ErrUnknownSURB) || keys != nil {
			t.Fatalf("format-1 record: keys %v, err %v; want ErrReplyKeysVersion", keys, err)
		}
	}
	got, epoch, err := s.Take(good.ID)
	if err != nil || epoch != 5 {
		t.Fatalf("format-2 record beside it: epoch %d, %v", epoch, err)
	}
	a, _ := got.MarshalBinary()
	b, _ := good.MarshalBinary()
	if string(a) != string(b) {
		t.Fatal("stored keys differ from the ones put")
	}
	s.settle()
	if n, err := s.Expire(6); err != nil || n != 1 {
		t.Fatalf("expire: %d, %v; want the format-1 record", n, err)
	}
	if _, _, err := s.Take(old); !errors.Is(err, ErrUnknownSURB) {
		t.Fatalf("after expiry: %v, want ErrUnknownSURB", err)
	}
}

// BenchmarkSURBStorePut measures durable puts from 8 concurrent senders
// (group commit shares fsyncs).
func BenchmarkSURBStorePut(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "surbs.db"))
	defer s.Close()
	keys := newReplyKeys(b, testFormat(b), 1)[0]
	b.SetParallelism(4)
	b.ReportAllocs()
	var mu sync.Mutex
	next := byte(0)
	b.RunParallel(func(pb *testing.PB) {
		k := *keys
		mu.Lock()
		next++
		k.ID[0] = next
		mu.Unlock()
		var i uint32
		for pb.Next() {
			i++
			k.ID[1], k.ID[2], k.ID[3] = byte(i), byte(i>>8), byte(i>>16)
			if err := s.Put(1, &k); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "surbs/s")
}
