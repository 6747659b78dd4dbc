package queue

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/strata-mix/strata/internal/testvec"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

// vector is one published payload: its fields and its bytes.
type vector struct {
	Name    string     `json:"name"`
	Size    int        `json:"payload_size"`
	Chunks  []vecChunk `json:"chunks,omitempty"`
	SURBs   []vecSURB  `json:"surbs,omitempty"`
	Acks    []vecAck   `json:"acks,omitempty"`
	Payload string     `json:"payload_hex"`
	Message string     `json:"message_hex,omitempty"`
}

type vecChunk struct {
	ID      string `json:"msg_id"`
	Flags   uint8  `json:"flags"`
	Length  uint32 `json:"transfer_length"`
	T       uint16 `json:"symbol_size"`
	K       uint16 `json:"k"`
	KPrime  uint16 `json:"k_prime"`
	ESI     uint32 `json:"esi"`
	Count   int    `json:"count"`
	Symbols string `json:"symbols_hex"`
}

type vecSURB struct {
	Stream   string `json:"stream"`
	LowWater uint64 `json:"low_water"`
	SURB     string `json:"surb_hex"`
}

type vecAck struct {
	Stream  string     `json:"stream"`
	Cum     uint64     `json:"cum"`
	Entries []AckEntry `json:"entries"`
}

func toVector(name string, size int, p Payload, b []byte) vector {
	v := vector{Name: name, Size: size, Payload: hex.EncodeToString(b)}
	for _, c := range p.Chunks {
		v.Chunks = append(v.Chunks, vecChunk{ID: hex.EncodeToString(c.ID[:]), Flags: c.Flags, Length: c.Length, T: c.T, K: c.K, KPrime: c.KPrime, ESI: c.ESI, Count: c.Count(), Symbols: hex.EncodeToString(c.Symbols)})
	}
	for _, s := range p.SURBs {
		v.SURBs = append(v.SURBs, vecSURB{Stream: hex.EncodeToString(s.Stream[:]), LowWater: s.LowWater, SURB: hex.EncodeToString(s.SURB)})
	}
	for _, a := range p.Acks {
		v.Acks = append(v.Acks, vecAck{Stream: hex.EncodeToString(a.Stream[:]), Cum: a.Cum, Entries: a.Entries})
	}
	return v
}

// makeVectors builds the published vectors deterministically.
func makeVectors(t *testing.T) []vector {
	stream := StreamID{1, 2, 3, 4, 5, 6, 7, 8}
	msg := []byte("Hello, Strata! A short message, one packet, twelve symbols.")
	g, err := planMessage(len(msg), 2030)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := NewEncoder(msg, g.t)
	if err != nil {
		t.Fatal(err)
	}
	var syms []byte
	for esi := range uint32(g.kPrime + 2) {
		syms = append(syms, enc.Symbol(esi)...)
	}
	small := Chunk{ID: NewMsgID(stream, 7), Flags: FlagReliable, Length: uint32(len(msg)), T: uint16(g.t), K: uint16(g.k), KPrime: uint16(g.kPrime), ESI: 0, Symbols: syms}
	surb := bytes.Repeat([]byte{0xab}, 357)
	var out []vector
	add := func(name string, size int, p Payload, message []byte) {
		b, err := p.Marshal(size)
		if err != nil {
			t.Fatal(err)
		}
		v := toVector(name, size, p, b)
		v.Message = hex.EncodeToString(message)
		out = append(out, v)
	}
	add("reliable short message: SURB and K'+2 symbols in one payload", 2030,
		Payload{SURBs: []SURBItem{{Stream: stream, LowWater: 5, SURB: surb}}, Chunks: []Chunk{small}}, msg)

	big := bytes.Repeat([]byte("0123456789abcdef"), 2000) // 32000 bytes
	gb, _ := planMessage(len(big), 2030)
	encb, err := NewEncoder(big, gb.t)
	if err != nil {
		t.Fatal(err)
	}
	repair := uint32(gb.kPrime + 3)
	add("fast large message: one repair symbol fills the payload", 2030,
		Payload{Chunks: []Chunk{{ID: NewMsgID(StreamID{9, 9, 9, 9, 9, 9, 9, 9}, 0), Length: uint32(len(big)), T: uint16(gb.t), K: uint16(gb.k), KPrime: uint16(gb.kPrime), ESI: repair, Symbols: encb.Symbol(repair)}}}, nil)
	add("ack: cumulative mark, one decoded message, one need request", 2030,
		Payload{Acks: []Ack{{Stream: stream, Cum: 7, Entries: []AckEntry{{Seq: 9, Need: 0}, {Seq: 8, Need: 3}}}}}, nil)
	return out
}

// TestVectors checks the published vectors: they parse to their fields,
// re-encode to their bytes, and a chunk vector's symbols decode to its
// message.
func TestVectors(t *testing.T) {
	vs := makeVectors(t)
	var pub []vector
	testvec.Load(t, filepath.Join("testdata", "vectors.json"), *update, func() any { return vs }, &pub)
	if !reflect.DeepEqual(pub, vs) {
		t.Fatal("testdata/vectors.json differs from what the code produces (go test -run TestVectors -update)")
	}
	for _, v := range pub {
		b, _ := hex.DecodeString(v.Payload)
		p, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if got := toVector(v.Name, v.Size, p, b); !reflect.DeepEqual(got.Chunks, v.Chunks) || !reflect.DeepEqual(got.SURBs, v.SURBs) || !reflect.DeepEqual(got.Acks, v.Acks) {
			t.Fatalf("%s: parsed fields differ", v.Name)
		}
		if v.Message == "" {
			continue
		}
		c := p.Chunks[0]
		dec, err := NewDecoder(int(c.Length), int(c.T))
		if err != nil {
			t.Fatal(err)
		}
		done := false
		for i := range c.Count() {
			done, _ = dec.Add(c.ESI+uint32(i), c.Symbols[i*int(c.T):(i+1)*int(c.T)])
		}
		if want, _ := hex.DecodeString(v.Message); !done || !bytes.Equal(dec.Message(), want) {
			t.Fatalf("%s: symbols do not decode to the message", v.Name)
		}
	}
}

// TestParseRejects: truncated, forged and absurd payloads are errors.
func TestParseRejects(t *testing.T) {
	vs := makeVectors(t)
	good, _ := hex.DecodeString(vs[0].Payload)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	chunkAt := 1 + surbHeaderSize + 357
	cases := map[string][]byte{
		"empty":           {},
		"bad version":     mut(func(b []byte) []byte { b[0] = 2; return b }),
		"unknown item":    {Version, 9},
		"truncated":       good[:len(good)-1],
		"truncated chunk": good[:chunkAt+10],
		"SURB overruns":   mut(func(b []byte) []byte { b[1+17] = 0xff; return b }),
		"zero-size SURB":  mut(func(b []byte) []byte { b[1+17], b[1+18] = 0, 0; return b }),
		"unknown flag":    mut(func(b []byte) []byte { b[chunkAt+17] |= 0x80; return b }),
		"K forged":        mut(func(b []byte) []byte { b[chunkAt+25]++; return b }),
		"K' forged":       mut(func(b []byte) []byte { b[chunkAt+27]++; return b }),
		"T not 8k":        mut(func(b []byte) []byte { b[chunkAt+23]++; return b }),
		"4 GiB claim":     mut(func(b []byte) []byte { copy(b[chunkAt+18:], []byte{0xff, 0xff, 0xff, 0xff}); return b }),
		"count zero":      mut(func(b []byte) []byte { b[chunkAt+32], b[chunkAt+33] = 0, 0; return b }),
		"count overruns":  mut(func(b []byte) []byte { b[chunkAt+33]++; return b }),
		"ESI overflow":    mut(func(b []byte) []byte { copy(b[chunkAt+28:], []byte{0, 0xff, 0xff, 0xff}); return b }),
		"junk after end":  append(bytes.Clone(good), 0, 1),
		"ack overruns":    {Version, itemAck, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0},
	}
	for name, b := range cases {
		if _, err := Parse(b); !errors.Is(err, ErrPayload) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Parse(append(bytes.Clone(good), 0, 0, 0)); err != nil {
		t.Errorf("zero padding rejected: %v", err)
	}
}

// TestHandleRejects: the receiver counts malformed payloads, refuses
// messages above MaxMessage and senders above their reassembly cap, and
// ignores acks for streams it does not send on; the queue keeps working.
func TestHandleRejects(t *testing.T) {
	clk := newClock()
	q, _ := stepped(t, clk, func(c *Config) {
		c.MaxMessage = 1 << 20
		c.StreamReassemblyCap = 300 << 10
		c.ReassemblyCap = 1 << 20
		c.ReassemblyTTL = time.Minute
	})
	if _, err := q.Handle("x", []byte{Version, 9}); !errors.Is(err, ErrPayload) {
		t.Fatalf("malformed: %v", err)
	}
	chunk := func(stream byte, seq uint64, length int) []byte {
		g, err := planMessage(length, 2030)
		if err != nil {
			t.Fatal(err)
		}
		p := Payload{Chunks: []Chunk{{ID: NewMsgID(StreamID{stream}, seq), Length: uint32(length), T: uint16(g.t), K: uint16(g.k), KPrime: uint16(g.kPrime), Symbols: make([]byte, g.t)}}}
		b, err := p.Marshal(2030)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := q.Handle("x", chunk(1, 0, 1<<20+1)); !errors.Is(err, ErrRejected) {
		t.Fatalf("oversized message: %v", err)
	}
	// A 1 MiB message costs more than one stream may hold: refused.
	if _, err := q.Handle("x", chunk(1, 9, 1<<20)); !errors.Is(err, ErrRejected) {
		t.Fatalf("over the stream cap: %v", err)
	}
	// 64 KiB messages cost (36+16)·1992 + 2048 ≈ 103 KB each: the third
	// of one stream evicts the stream's first, another stream is
	// unaffected.
	for seq := range uint64(3) {
		clk.Add(time.Millisecond)
		if _, err := q.Handle("evil", chunk(1, seq+1, 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if s := q.Stats(); s.Evicted != 1 || s.Reassembling != 2 || q.in[StreamID{1}].partials[1] != nil {
		t.Fatalf("over the stream cap: %+v", s)
	}
	if _, err := q.Handle("evil", chunk(2, 4, 64<<10)); err != nil {
		t.Fatalf("another stream: %v", err)
	}
	// A chunk of a known message with other parameters is refused.
	if _, err := q.Handle("evil", chunk(1, 2, 60<<10)); !errors.Is(err, ErrRejected) {
		t.Fatalf("conflicting parameters: %v", err)
	}
	ack := Payload{Acks: []Ack{{Stream: StreamID{42}, Cum: 100}}}
	b, _ := ack.Marshal(2030)
	if _, err := q.Handle("x", b); err != nil {
		t.Fatal(err)
	}
	s := q.Stats()
	if s.BadPayloads != 1 || s.Rejected != 3 || s.UnknownAcks != 1 || s.Reassembling != 3 || s.Evicted != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Stalled partial messages expire and free their memory.
	clk.Add(2 * time.Minute)
	q.Next(clk.Now())
	if s := q.Stats(); s.Reassembling != 0 || s.Expired != 3 || s.ReassemblyBytes != 0 {
		t.Fatalf("after the TTL: %+v", s)
	}
	if _, err := q.Handle("evil", chunk(1, 5, 64<<10)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// FuzzParse: Parse never panics, and what it accepts re-encodes to a
// payload that parses to the same items.
func FuzzParse(f *testing.F) {
	for _, v := range makeVectors(&testing.T{}) {
		b, _ := hex.DecodeString(v.Payload)
		f.Add(b)
	}
	f.Add([]byte{Version, itemAck, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrPayload) {
				t.Fatalf("error not wrapping ErrPayload: %v", err)
			}
			return
		}
		again, err := p.Marshal(len(b) + 1)
		if err != nil {
			return // an ack with more than 255 entries cannot occur; sizes may differ
		}
		p2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-encoded payload rejected: %v", err)
		}
		if len(p2.Chunks) != len(p.Chunks) || len(p2.SURBs) != len(p.SURBs) || len(p2.Acks) != len(p.Acks) {
			t.Fatal("re-encoding changed the items")
		}
	})
}

// FuzzHandle: the receiver takes arbitrary payloads without panicking.
func FuzzHandle(f *testing.F) {
	for _, v := range makeVectors(&testing.T{}) {
		b, _ := hex.DecodeString(v.Payload)
		f.Add(b)
	}
	// One queue per fuzzing process: state builds up across inputs, as it
	// would on a node, and no input may panic it.
	clk := newClock()
	q, err := Open(Config{Path: filepath.Join(f.TempDir(), "q.db"), PayloadSize: 2030, Now: clk.Now, MaxMessage: 1 << 20, ReassemblyCap: 8 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = q.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = q.Handle("f", b)
		_, _ = q.Handle("f", b)
		clk.Add(time.Minute)
		q.Next(clk.Now())
	})
}
