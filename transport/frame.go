package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A frame on a /strata/mix/1 stream is
//
//	length (uint16, big-endian) || body (length bytes)
//
// and length is either Config.PacketSize (the body is a packet) or, on a
// host with an EntryHandler, PacketSize+EntryHeaderSize (an entry frame: the
// body is next hop || packet). The prefix exists so that a wrong-size frame
// can be told from a right-size one: a stream of raw fixed-size packets would
// silently shift on a short write.

// FrameSizeError reports a frame whose length prefix is neither the packet
// size nor, where entry frames are accepted, the entry frame size.
type FrameSizeError struct {
	// Got is the length prefix; Want is the packet size.
	Got, Want int
	// Entry is true when entry frames (Want+EntryHeaderSize) were also
	// accepted.
	Entry bool
}

func (e *FrameSizeError) Error() string {
	if e.Entry {
		return fmt.Sprintf("frame of %d bytes, want %d or %d", e.Got, e.Want, e.Want+EntryHeaderSize)
	}
	return fmt.Sprintf("frame of %d bytes, want %d", e.Got, e.Want)
}

// Is makes errors.Is(err, ErrFrameSize) hold.
func (e *FrameSizeError) Is(target error) bool { return target == ErrFrameSize }

// frameReader reads the frames of one stream and lends out each body from
// its own buffer, so that reading allocates nothing per frame.
type frameReader struct {
	br      *bufio.Reader
	size    int
	entry   bool // frames of size+EntryHeaderSize are accepted too
	pending int  // bytes of the lent frame still to discard
}

// newFrameReader reads frames of packetSize bytes and, if entry is set, entry
// frames of packetSize+EntryHeaderSize bytes.
func newFrameReader(r io.Reader, packetSize int, entry bool) *frameReader {
	return &frameReader{
		br:    bufio.NewReaderSize(r, max(readBufferSize, 2*(frameHeaderSize+EntryHeaderSize+packetSize))),
		size:  packetSize,
		entry: entry,
	}
}

// next returns the body of the next frame: a packet of size bytes, or an
// entry frame body of size+EntryHeaderSize bytes. The slice aliases the
// reader's buffer and is valid until the following call. It returns io.EOF
// when the stream ends cleanly between frames, io.ErrUnexpectedEOF when it
// ends inside one and an error wrapping ErrFrameSize for a wrong length
// prefix.
func (fr *frameReader) next() ([]byte, error) {
	if fr.pending > 0 {
		// Discard of bytes already buffered by Peek cannot fail.
		_, _ = fr.br.Discard(fr.pending)
		fr.pending = 0
	}
	hdr, err := fr.br.Peek(frameHeaderSize)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr))
	if n != fr.size && (!fr.entry || n != fr.size+EntryHeaderSize) {
		return nil, &FrameSizeError{Got: n, Want: fr.size, Entry: fr.entry}
	}
	frame, err := fr.br.Peek(frameHeaderSize + n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	fr.pending = len(frame)
	return frame[frameHeaderSize:], nil
}

// buffered reports whether a following call to next may return without
// reading from the stream.
func (fr *frameReader) buffered() int {
	return fr.br.Buffered() - fr.pending
}

// writeFrame appends one frame with body b to w. The header goes out byte by
// byte so that no header array escapes to the heap.
func writeFrame(w *bufio.Writer, b []byte) error {
	n := len(b)
	if err := w.WriteByte(byte(n >> 8)); err != nil {
		return err
	}
	if err := w.WriteByte(byte(n)); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}
