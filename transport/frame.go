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
//	length (uint16, big-endian) || packet (length bytes)
//
// and length must equal Config.PacketSize. The prefix exists only so that a
// wrong-size frame can be told from a right-size one: a stream of raw
// fixed-size packets would silently shift on a short write.

// FrameSizeError reports a frame whose length prefix is not the packet size.
type FrameSizeError struct {
	Got, Want int
}

func (e *FrameSizeError) Error() string {
	return fmt.Sprintf("frame of %d bytes, want %d", e.Got, e.Want)
}

// Is makes errors.Is(err, ErrFrameSize) hold.
func (e *FrameSizeError) Is(target error) bool { return target == ErrFrameSize }

// frameReader reads the frames of one stream and lends out each packet from
// its own buffer, so that reading allocates nothing per packet.
type frameReader struct {
	br      *bufio.Reader
	size    int
	pending int // bytes of the lent frame still to discard
}

func newFrameReader(r io.Reader, packetSize int) *frameReader {
	return &frameReader{
		br:   bufio.NewReaderSize(r, max(readBufferSize, 2*(frameHeaderSize+packetSize))),
		size: packetSize,
	}
}

// next returns the next packet. The slice aliases the reader's buffer and is
// valid until the following call. It returns io.EOF when the stream ends
// cleanly between frames, io.ErrUnexpectedEOF when it ends inside one and an
// error wrapping ErrFrameSize for a wrong length prefix.
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
	if n != fr.size {
		return nil, &FrameSizeError{Got: n, Want: fr.size}
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

// writeFrame appends one frame to w. The header goes out byte by byte so that
// no header array escapes to the heap.
func writeFrame(w *bufio.Writer, pkt []byte) error {
	n := len(pkt)
	if err := w.WriteByte(byte(n >> 8)); err != nil {
		return err
	}
	if err := w.WriteByte(byte(n)); err != nil {
		return err
	}
	_, err := w.Write(pkt)
	return err
}
