package queue

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/xssnick/raptorq"
)

// TestSourceBlockOverWholeTable checks the K' choice against every row of
// RFC 6330 Table 2: the chosen K' is in the table, at least k, has a P that is
// not prime (so the library's P1 is the RFC's), and no smaller usable K'
// exists.
func TestSourceBlockOverWholeTable(t *testing.T) {
	table := raptorq.ParamsTable
	if len(table) != 477 || table[0].KPadded != 10 || table[len(table)-1].KPadded != 56403 {
		t.Fatalf("library table has %d rows (%d…%d), RFC 6330 Table 2 has 477 (10…56403)", len(table), table[0].KPadded, table[len(table)-1].KPadded)
	}
	primeP := 0
	usable := map[int]bool{}
	for _, row := range table {
		p := int(row.KPadded+row.S+row.H) - int(row.W)
		if isPrime(p) {
			primeP++
		} else {
			usable[int(row.KPadded)] = true
		}
	}
	if primeP != 99 {
		t.Fatalf("%d rows have a prime P; the RFC table has 99", primeP)
	}
	for _, row := range table {
		for _, k := range []int{int(row.KPadded), int(row.KPadded) - 1} {
			if k < 1 {
				continue
			}
			kp, p, err := SourceBlock(k)
			if err != nil {
				t.Fatalf("k=%d: %v", k, err)
			}
			if kp < k || !usable[kp] || isPrime(p) {
				t.Fatalf("k=%d: chose K'=%d P=%d", k, kp, p)
			}
			for smaller := k; smaller < kp; smaller++ {
				if usable[smaller] {
					t.Fatalf("k=%d: chose K'=%d but %d is usable", k, kp, smaller)
				}
			}
		}
	}
	if _, _, err := SourceBlock(56404); !errors.Is(err, ErrFEC) {
		t.Fatalf("k beyond the table: %v", err)
	}
	if _, _, err := SourceBlock(0); !errors.Is(err, ErrFEC) {
		t.Fatalf("k=0: %v", err)
	}
}

func TestIsPrime(t *testing.T) {
	var got []int
	for n := range 30 {
		if isPrime(n) {
			got = append(got, n)
		}
	}
	want := []int{2, 3, 5, 7, 11, 13, 17, 19, 23, 29}
	if !slicesEqual(got, want) {
		t.Fatalf("primes below 30: %v", got)
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDecodeFromKPlusTwoSymbols: any K'+2 distinct symbols, source and repair
// mixed, in any order and with duplicates, decode the message in at least
// 99.9 % of 2,000 trials.
func TestDecodeFromKPlusTwoSymbols(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const trials = 2000
	const symbol = 16
	failures := 0
	for trial := range trials {
		msg := make([]byte, 1+rnd.IntN(60*symbol))
		for i := range msg {
			msg[i] = byte(rnd.Uint32())
		}
		enc, err := NewEncoder(msg, symbol)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := NewDecoder(len(msg), symbol)
		if err != nil {
			t.Fatal(err)
		}
		k := enc.SourceSymbols()
		if dec.SourceSymbols() != k {
			t.Fatalf("encoder K'=%d, decoder K'=%d", k, dec.SourceSymbols())
		}
		// K'+2 distinct ESIs out of the first 2K'+10, plus a duplicate.
		esis := rnd.Perm(2*k + 10)[:k+2]
		esis = append(esis, esis[0])
		done := false
		for _, esi := range esis {
			done, err = dec.Add(uint32(esi), enc.Symbol(uint32(esi)))
			if err != nil {
				t.Fatalf("trial %d: %v", trial, err)
			}
			if done {
				break
			}
		}
		if !done {
			failures++
			continue
		}
		if !bytes.Equal(dec.Message(), msg) {
			t.Fatalf("trial %d: decoded message differs", trial)
		}
	}
	if failures*1000 > trials {
		t.Fatalf("%d of %d trials failed to decode from K'+2 symbols", failures, trials)
	}
	t.Logf("%d of %d trials needed more than K'+2 symbols", failures, trials)
}

func TestFECRejectsBadRequests(t *testing.T) {
	for _, c := range []struct{ n, t int }{{0, 16}, {10, 0}, {10, 12}, {10, -8}, {10, 1 << 20}} {
		if _, err := NewEncoder(make([]byte, c.n), c.t); !errors.Is(err, ErrFEC) {
			t.Errorf("NewEncoder(%d bytes, t=%d): %v", c.n, c.t, err)
		}
		if _, err := NewDecoder(c.n, c.t); !errors.Is(err, ErrFEC) {
			t.Errorf("NewDecoder(%d, %d): %v", c.n, c.t, err)
		}
	}
	dec, err := NewDecoder(100, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Add(0, make([]byte, 15)); !errors.Is(err, ErrFEC) {
		t.Errorf("short symbol: %v", err)
	}
}

// BenchmarkEncode measures coding a 64 KiB message into 2000-byte symbols
// and producing 10 % repair symbols.
func BenchmarkEncode(b *testing.B) {
	msg := make([]byte, 64<<10)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		enc, err := NewEncoder(msg, 2000)
		if err != nil {
			b.Fatal(err)
		}
		k := enc.SourceSymbols()
		for esi := k; esi < k+k/10+1; esi++ {
			enc.Symbol(uint32(esi))
		}
	}
}

// BenchmarkDecode measures decoding a 64 KiB message from repair symbols
// only (the worst case).
func BenchmarkDecode(b *testing.B) {
	msg := make([]byte, 64<<10)
	enc, err := NewEncoder(msg, 2000)
	if err != nil {
		b.Fatal(err)
	}
	k := enc.SourceSymbols()
	syms := make([][]byte, k+2)
	for i := range syms {
		syms[i] = enc.Symbol(uint32(k + i))
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		dec, _ := NewDecoder(len(msg), 2000)
		done := false
		for i, s := range syms {
			if done, _ = dec.Add(uint32(k+i), s); done {
				break
			}
		}
		if !done {
			b.Fatal("not decoded")
		}
	}
}

// FuzzDecoderAdd feeds the decoder arbitrary symbols: it must decode, wait or
// fail cleanly, never panic.
func FuzzDecoderAdd(f *testing.F) {
	f.Add(uint32(0), []byte("0123456789abcdef"), uint32(70000), []byte("fedcba9876543210"))
	f.Fuzz(func(t *testing.T, e1 uint32, s1 []byte, e2 uint32, s2 []byte) {
		dec, err := NewDecoder(20, 16)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			esi uint32
			sym []byte
		}{{e1, s1}, {e2, s2}} {
			if _, err := dec.Add(c.esi, c.sym); err != nil && len(c.sym) == 16 {
				t.Fatalf("well-sized symbol rejected: %v", err)
			}
		}
	})
}
