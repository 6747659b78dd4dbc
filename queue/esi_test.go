package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// esiConfig is the sender's configuration of the ESI tests: a real bbolt
// file, a manual clock, resend timers short enough that every pass
// prepares a round.
func esiConfig(path string, now func() time.Time) Config {
	return Config{
		Path: path, PayloadSize: 2030, Now: now,
		SURBs:        &surbMint{owner: "A", delay: time.Millisecond},
		ForwardDelay: time.Millisecond, ReplyGrace: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
	}
}

// chunkESIs lists the (message, ESI) pairs a packet carries.
func chunkESIs(t testing.TB, payload []byte) []string {
	t.Helper()
	p, err := Parse(payload)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range p.Chunks {
		for i := range c.Count() {
			out = append(out, fmt.Sprintf("%x/%d", c.ID, c.ESI+uint32(i)))
		}
	}
	return out
}

// TestThousandRestartsKeepTheMessage: a pending Reliable message survives
// 1,000 Open/Close cycles of its bbolt file — half of them closing before
// anything was sent (a CLI command), half after one packet — and is still
// sent and decodable afterwards; no encoding symbol id is ever sent twice.
// (Before, each Open moved the message 2^16 ESIs on and it was given up at
// the 256th.)
func TestThousandRestartsKeepTheMessage(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "q.db")
	ctx := context.Background()
	body := randomBody(rand.New(rand.NewPCG(1, 17)), 20_000) // T 1992, K 11: one symbol a packet
	q, err := Open(esiConfig(path, clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Put(ctx, "B", body, Reliable)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var pkts []Packet
	cycles := 1000
	if testing.Short() {
		cycles = 300
	}
	for i := range cycles {
		var gaveUp error
		cfg := esiConfig(path, clk.Now)
		cfg.OnOutcome = func(o Outcome) { gaveUp = errors.Join(gaveUp, o.Err) }
		q, err := Open(cfg)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if !q.Holds(id) {
			t.Fatalf("cycle %d: the message is gone (%v)", i, gaveUp)
		}
		q.step(ctx) // a full first round is reserved
		if i%2 == 1 {
			for sent := false; !sent; {
				p, ok := q.Next(clk.Now())
				if !ok {
					t.Fatalf("cycle %d: nothing to send", i)
				}
				for _, e := range chunkESIs(t, p.Payload) {
					if seen[e]++; seen[e] > 1 {
						t.Fatalf("cycle %d: symbol %s sent again", i, e)
					}
					sent = true
				}
				pkts = append(pkts, p)
			}
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if gaveUp != nil {
			t.Fatalf("cycle %d: %v", i, gaveUp)
		}
	}
	// The receiver decodes it from what the last 40 cycles sent (SURB
	// packets and one symbol each).
	r, _ := stepped(t, clk, nil)
	var got []Message
	for _, p := range pkts[len(pkts)-40:] {
		ms, err := r.Handle("A", p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ms...)
	}
	if len(got) != 1 || got[0].ID != id || !bytes.Equal(got[0].Body, body) {
		t.Fatalf("%d messages decoded from the last 40 packets", len(got))
	}
	q, err = Open(esiConfig(path, clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	m := q.msgs[id]
	if m == nil || int(m.nextESI) != len(seen) {
		t.Fatalf("after %d cycles: next ESI %v, %d symbols sent", cycles, m, len(seen))
	}
	t.Logf("%d cycles: %d symbols sent, next ESI %d (of 2^24)", cycles, len(seen), m.nextESI)
}

// The kill -9 test's child process: it opens the queue at
// QUEUE_KILL_CHILD, runs it and prints the ESIs of every packet it sends,
// until it is killed.
func TestMain(m *testing.M) {
	if path := os.Getenv("QUEUE_KILL_CHILD"); path != "" {
		killChild(path)
		return
	}
	os.Exit(m.Run())
}

func killChild(path string) {
	q, err := Open(esiConfig(path, time.Now))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() { _ = q.Run(context.Background()) }()
	out := bufio.NewWriter(os.Stdout)
	for {
		p, ok := q.Next(time.Now())
		if !ok {
			time.Sleep(time.Millisecond)
			continue
		}
		pl, err := Parse(p.Payload)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for _, c := range pl.Chunks {
			for i := range c.Count() {
				fmt.Fprintf(out, "%x/%d\n", c.ID, c.ESI+uint32(i))
			}
		}
		_ = out.Flush() // before the next packet may leave
		time.Sleep(500 * time.Microsecond)
	}
}

// TestKillNineDoesNotReuseESIs: a process sending a pending message is
// killed with SIGKILL (no Close) after a few packets, ten times over; every
// next process resumes above every symbol id sent before, and the message
// still decodes from what they sent.
func TestKillNineDoesNotReuseESIs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	body := randomBody(rand.New(rand.NewPCG(2, 17)), 20_000)
	q, err := Open(esiConfig(path, time.Now))
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Put(context.Background(), "B", body, Reliable)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(3, 17))
	seen := map[string]int{}
	var esis []string
	for round := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "QUEUE_KILL_CHILD="+path)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		want := 3 + rnd.IntN(20)
		n := 0
		for n < want && sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "error") {
				t.Fatalf("child: %s", line)
			}
			if seen[line]++; seen[line] > 1 {
				t.Fatalf("kill %d: symbol %s sent again", round, line)
			}
			esis = append(esis, line)
			n++
		}
		_ = cmd.Process.Kill() // SIGKILL: no Close, no deferred writes
		for sc.Scan() {        // what it printed before dying counts too
			line := sc.Text()
			if seen[line]++; seen[line] > 1 {
				t.Fatalf("kill %d: symbol %s sent again", round, line)
			}
			esis = append(esis, line)
		}
		_ = cmd.Wait()
		if n < want {
			t.Fatalf("kill %d: the child sent %d symbols, want %d", round, n, want)
		}
	}
	// Every symbol sent carried an ESI of its own: the receiver decodes
	// from the symbols of the last processes (regenerated here from the
	// message, as the ESIs say which).
	r, _ := stepped(t, newClock(), nil)
	g, _ := planMessage(len(body), 2030)
	enc, err := NewEncoder(body, g.t)
	if err != nil {
		t.Fatal(err)
	}
	var got []Message
	for _, e := range esis[len(esis)-g.kPrime-4:] {
		_, s, _ := strings.Cut(e, "/")
		esi, _ := strconv.Atoi(s)
		c := Chunk{ID: id, Flags: FlagReliable, Length: uint32(g.n), T: uint16(g.t), K: uint16(g.k), KPrime: uint16(g.kPrime), ESI: uint32(esi), Symbols: enc.Symbol(uint32(esi))}
		b := newBuilder(2030)
		b.chunk(&c)
		ms, err := r.Handle("A", b.buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ms...)
	}
	if len(got) != 1 || !bytes.Equal(got[0].Body, body) {
		t.Fatalf("%d messages decoded", len(got))
	}
	t.Logf("10 kills: %d symbols sent, none twice", len(esis))
}

// TestVersion1RecordResumesPastItsWindow: a message stored by the earlier
// format (record version 1, restarts counted, no esi entry) resumes at
// (restarts+1)·2^16, above every ESI its writer could have sent, and is
// sent from there.
func TestVersion1RecordResumesPastItsWindow(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(esiConfig(path, clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("written by an earlier version")
	id, err := q.Put(context.Background(), "B", body, Reliable)
	if err != nil {
		t.Fatal(err)
	}
	m := q.msgs[id]
	// rewrite it as version 1 with 3 restarts counted
	v1 := []byte{1, byte(Reliable), 0, 0, 0, 3}
	v1 = append(v1, encodeRecord(m)[2:]...)
	if err := q.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketESI).Delete(id[:]); err != nil { // it had no esi bucket
			return err
		}
		return tx.Bucket(bucketMsgs).Put(id[:], v1)
	}); err != nil {
		t.Fatal(err)
	}
	q.msgs[id].mark = 0 // so that Close writes no mark either
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(esiConfig(path, clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	m = q.msgs[id]
	if m == nil || m.nextESI != 4<<16 || !bytes.Equal(m.body, body) || m.rq.to != "B" || m.class != Reliable {
		t.Fatalf("version 1 record loaded as %+v", m)
	}
	q.step(context.Background())
	for {
		p, ok := q.Next(clk.Now())
		if !ok {
			break
		}
		for _, e := range chunkESIs(t, p.Payload) {
			_, s, _ := strings.Cut(e, "/")
			if esi, _ := strconv.Atoi(s); esi < 4<<16 {
				t.Fatalf("ESI %d sent, below the version 1 window", esi)
			}
		}
	}
}
