package transport

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func encodeFrames(size int, pkts ...[]byte) []byte {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	for _, p := range pkts {
		if err := writeFrame(w, p); err != nil {
			panic(err)
		}
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func TestFrameReader(t *testing.T) {
	const size = 5
	p1, p2 := []byte("hello"), []byte("world")
	two := encodeFrames(size, p1, p2)
	if !bytes.Equal(two[:7], []byte{0, 5, 'h', 'e', 'l', 'l', 'o'}) {
		t.Fatalf("frame bytes % x, want 00 05 then the packet", two[:7])
	}
	tests := []struct {
		name    string
		in      []byte
		want    [][]byte
		wantErr error
	}{
		{"an empty stream ends cleanly", nil, nil, io.EOF},
		{"frames come back in order", two, [][]byte{p1, p2}, io.EOF},
		{"a stream cut inside a header", append(append([]byte(nil), two...), 0), [][]byte{p1, p2}, io.ErrUnexpectedEOF},
		{"a stream cut inside a packet", two[:len(two)-1], [][]byte{p1}, io.ErrUnexpectedEOF},
		{"a longer frame is refused", encodeFrames(size, p1, []byte("worlds")), [][]byte{p1}, ErrFrameSize},
		{"a shorter frame is refused", encodeFrames(size, []byte("hi")), nil, ErrFrameSize},
		{"an empty frame is refused", encodeFrames(size, nil), nil, ErrFrameSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fr := newFrameReader(bytes.NewReader(tc.in), size, false)
			for i, want := range tc.want {
				got, err := fr.next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("frame %d = %q, want %q", i, got, want)
				}
			}
			if _, err := fr.next(); !errors.Is(err, tc.wantErr) {
				t.Fatalf("final err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestFrameSizeErrorSaysWhat(t *testing.T) {
	fr := newFrameReader(bytes.NewReader(encodeFrames(5, []byte("hi"))), 5, false)
	_, err := fr.next()
	var fse *FrameSizeError
	if !errors.As(err, &fse) || fse.Got != 2 || fse.Want != 5 {
		t.Fatalf("err = %#v", err)
	}
}

func FuzzFrameReader(f *testing.F) {
	entry := func(size int, next byte, pkt []byte) []byte {
		return append(append([]byte{byte((size + EntryHeaderSize) >> 8), byte(size + EntryHeaderSize)}, bytes.Repeat([]byte{next}, EntryHeaderSize)...), pkt...)
	}
	f.Add(uint16(5), false, encodeFrames(5, []byte("hello"), []byte("world")))
	f.Add(uint16(5), true, append(encodeFrames(5, []byte("hello")), entry(5, 7, []byte("world"))...))
	f.Add(uint16(5), false, entry(5, 7, []byte("world")))
	f.Add(uint16(5), false, []byte{0, 6, 1, 2, 3, 4, 5, 6})
	f.Add(uint16(1), true, []byte{0})
	f.Add(uint16(testPacketSize), true, entry(testPacketSize, 1, make([]byte, testPacketSize)))
	f.Add(uint16(testPacketSize), false, encodeFrames(testPacketSize, make([]byte, testPacketSize)))
	f.Fuzz(func(t *testing.T, size uint16, acceptEntry bool, in []byte) {
		if size == 0 || int(size) > maxPacketSize {
			return
		}
		fr := newFrameReader(bytes.NewReader(in), int(size), acceptEntry)
		off := 0
		for {
			body, err := fr.next()
			if err != nil {
				if errors.Is(err, io.EOF) && off != len(in) {
					t.Fatalf("clean EOF at %d of %d bytes", off, len(in))
				}
				return
			}
			// Every accepted frame is exactly the bytes at its place in
			// the input, behind a header that states the packet size or,
			// only where entry frames are accepted, the entry size.
			n := int(binary.BigEndian.Uint16(in[off:]))
			switch {
			case len(body) != n:
				t.Fatalf("body of %d bytes behind a header of %d", len(body), n)
			case n == int(size):
			case acceptEntry && n == int(size)+EntryHeaderSize:
			default:
				t.Fatalf("accepted a header of %d (size %d, entry %v)", n, size, acceptEntry)
			}
			if !bytes.Equal(body, in[off+2:off+2+n]) {
				t.Fatal("frame bytes differ from the input")
			}
			off += 2 + n
		}
	})
}

func FuzzDecodeIdentity(f *testing.F) {
	key, err := GenerateIdentity()
	if err != nil {
		f.Fatal(err)
	}
	good, err := EncodeIdentity(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte("-----BEGIN STRATA IDENTITY KEY-----\n-----END STRATA IDENTITY KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := DecodeIdentity(data)
		if err != nil {
			if !errors.Is(err, ErrBadIdentity) {
				t.Fatalf("error %v does not wrap ErrBadIdentity", err)
			}
			return
		}
		// Whatever decodes is a consistent key that survives a round trip.
		if !bytes.Equal(k.Public().(ed25519.PublicKey), ed25519.NewKeyFromSeed(k.Seed()).Public().(ed25519.PublicKey)) {
			t.Fatal("decoded key's public half does not match its seed")
		}
		again, err := EncodeIdentity(k)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeIdentity(again)
		if err != nil || !back.Equal(k) {
			t.Fatalf("round trip of a decoded key: %v", err)
		}
	})
}

func FuzzParseNodeID(f *testing.F) {
	f.Add("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseNodeID(s)
		if err != nil {
			return
		}
		if got := id.Hex(); !bytes.EqualFold([]byte(got), []byte(s)) {
			t.Fatalf("ParseNodeID(%q) = %s", s, got)
		}
	})
}
