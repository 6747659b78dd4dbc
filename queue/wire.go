package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format of a queue payload (docs/queue.md has it byte by byte): a
// version byte, then items, each starting with a type byte, until the end of
// the payload or an end item (type 0, the zero padding). All integers are
// big endian.
const (
	// Version is the first byte of every queue payload.
	Version = 1

	itemEnd   = 0
	itemChunk = 1
	itemSURB  = 2
	itemAck   = 3

	// ChunkHeaderSize is the size of a chunk item before its symbols:
	// type, message id, flags, transfer length, T, K, K', ESI, count.
	ChunkHeaderSize = 1 + 16 + 1 + 4 + 2 + 2 + 2 + 4 + 2
	// surbHeaderSize: type, stream, low-water mark, length.
	surbHeaderSize = 1 + 8 + 8 + 2
	// ackHeaderSize: type, stream, cumulative seq, entry count.
	ackHeaderSize = 1 + 8 + 8 + 1
	ackEntrySize  = 8 + 4

	// FlagReliable marks a chunk of a Reliable message: its receiver acks.
	FlagReliable = 0x01

	maxESI = 1<<24 - 1 // RFC 6330 encoding symbol ids are 24 bits wide.
)

// ErrPayload reports a malformed queue payload.
var ErrPayload = errors.New("queue: malformed payload")

// StreamID names one sender's stream of messages to one recipient.
type StreamID [8]byte

// MsgID names a message: its stream and its sequence number in the stream.
type MsgID [16]byte

// NewMsgID returns the id of message seq of stream s.
func NewMsgID(s StreamID, seq uint64) MsgID {
	var id MsgID
	copy(id[:8], s[:])
	binary.BigEndian.PutUint64(id[8:], seq)
	return id
}

// Stream returns the stream of the message.
func (id MsgID) Stream() StreamID { return StreamID(id[:8]) }

// Seq returns the sequence number of the message in its stream.
func (id MsgID) Seq() uint64 { return binary.BigEndian.Uint64(id[8:]) }

// Chunk is a run of Count consecutive encoding symbols of one message,
// starting at ESI.
type Chunk struct {
	ID     MsgID
	Flags  uint8
	Length uint32 // transfer length: the message's size in bytes
	T      uint16 // symbol size, a multiple of 8
	K      uint16 // source symbols: ceil(Length / T)
	KPrime uint16 // K padded to a usable RFC 6330 K' (SourceBlock)
	ESI    uint32
	// Symbols holds Count = len(Symbols)/T symbols; after Parse it
	// aliases the payload.
	Symbols []byte
}

// Count is the number of symbols in the chunk.
func (c *Chunk) Count() int {
	if c.T == 0 {
		return 0
	}
	return len(c.Symbols) / int(c.T)
}

// SURBItem carries a SURB the receiver of a stream answers through, and the
// stream's low-water mark: every message of the stream before LowWater is
// finished (acked or abandoned), so the receiver may forget it.
type SURBItem struct {
	Stream   StreamID
	LowWater uint64
	SURB     []byte
}

// AckEntry is the state of one message of a stream at its receiver: Need 0
// means decoded; Need > 0 asks for that many more symbols.
type AckEntry struct {
	Seq  uint64
	Need uint32
}

// Ack is a receiver's cumulative report on a stream: every message with a
// sequence number below Cum is finished (decoded, or given up by the sender
// per its low-water mark), and so is every listed entry with Need 0; entries
// with Need > 0 ask for that many more symbols.
type Ack struct {
	Stream  StreamID
	Cum     uint64
	Entries []AckEntry
}

// Payload is the decoded content of one packet payload.
type Payload struct {
	Chunks []Chunk
	SURBs  []SURBItem
	Acks   []Ack
}

// chunkParams checks that length, T, K and K' describe a source block this
// package would produce.
func chunkParams(length, t, k, kPrime int) error {
	if length < 1 {
		return fmt.Errorf("%w: transfer length %d", ErrPayload, length)
	}
	if t < 8 || t%8 != 0 {
		return fmt.Errorf("%w: symbol size %d", ErrPayload, t)
	}
	if want := (length + t - 1) / t; k != want {
		return fmt.Errorf("%w: K=%d, want %d for %d bytes in %d-byte symbols", ErrPayload, k, want, length, t)
	}
	kp, _, err := SourceBlock(k)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if kp != kPrime {
		return fmt.Errorf("%w: K'=%d, want %d", ErrPayload, kPrime, kp)
	}
	return nil
}

// Parse decodes a queue payload. Symbols and SURBs alias b. It never panics:
// anything malformed is an error wrapping ErrPayload.
func Parse(b []byte) (Payload, error) {
	var p Payload
	if len(b) < 1 {
		return p, fmt.Errorf("%w: empty", ErrPayload)
	}
	if b[0] != Version {
		return p, fmt.Errorf("%w: version %d", ErrPayload, b[0])
	}
	b = b[1:]
	for len(b) > 0 && b[0] != itemEnd {
		switch b[0] {
		case itemChunk:
			if len(b) < ChunkHeaderSize {
				return p, fmt.Errorf("%w: truncated chunk header", ErrPayload)
			}
			var c Chunk
			copy(c.ID[:], b[1:17])
			c.Flags = b[17]
			c.Length = binary.BigEndian.Uint32(b[18:])
			c.T = binary.BigEndian.Uint16(b[22:])
			c.K = binary.BigEndian.Uint16(b[24:])
			c.KPrime = binary.BigEndian.Uint16(b[26:])
			c.ESI = binary.BigEndian.Uint32(b[28:])
			count := int(binary.BigEndian.Uint16(b[32:]))
			if c.Flags&^FlagReliable != 0 {
				return p, fmt.Errorf("%w: unknown chunk flags %#x", ErrPayload, c.Flags)
			}
			if err := chunkParams(int(c.Length), int(c.T), int(c.K), int(c.KPrime)); err != nil {
				return p, err
			}
			if count < 1 || int(c.ESI)+count-1 > maxESI {
				return p, fmt.Errorf("%w: %d symbols from ESI %d", ErrPayload, count, c.ESI)
			}
			n := count * int(c.T)
			if len(b)-ChunkHeaderSize < n {
				return p, fmt.Errorf("%w: chunk claims %d symbol bytes, %d left", ErrPayload, n, len(b)-ChunkHeaderSize)
			}
			c.Symbols = b[ChunkHeaderSize : ChunkHeaderSize+n : ChunkHeaderSize+n]
			p.Chunks = append(p.Chunks, c)
			b = b[ChunkHeaderSize+n:]
		case itemSURB:
			if len(b) < surbHeaderSize {
				return p, fmt.Errorf("%w: truncated SURB item", ErrPayload)
			}
			var s SURBItem
			copy(s.Stream[:], b[1:9])
			s.LowWater = binary.BigEndian.Uint64(b[9:])
			n := int(binary.BigEndian.Uint16(b[17:]))
			if n == 0 || len(b)-surbHeaderSize < n {
				return p, fmt.Errorf("%w: SURB of %d bytes, %d left", ErrPayload, n, len(b)-surbHeaderSize)
			}
			s.SURB = b[surbHeaderSize : surbHeaderSize+n : surbHeaderSize+n]
			p.SURBs = append(p.SURBs, s)
			b = b[surbHeaderSize+n:]
		case itemAck:
			if len(b) < ackHeaderSize {
				return p, fmt.Errorf("%w: truncated ack", ErrPayload)
			}
			var a Ack
			copy(a.Stream[:], b[1:9])
			a.Cum = binary.BigEndian.Uint64(b[9:])
			n := int(b[17])
			if len(b)-ackHeaderSize < n*ackEntrySize {
				return p, fmt.Errorf("%w: ack claims %d entries", ErrPayload, n)
			}
			e := b[ackHeaderSize:]
			for i := range n {
				a.Entries = append(a.Entries, AckEntry{
					Seq:  binary.BigEndian.Uint64(e[i*ackEntrySize:]),
					Need: binary.BigEndian.Uint32(e[i*ackEntrySize+8:]),
				})
			}
			p.Acks = append(p.Acks, a)
			b = b[ackHeaderSize+n*ackEntrySize:]
		default:
			return p, fmt.Errorf("%w: unknown item type %d", ErrPayload, b[0])
		}
	}
	for _, x := range b {
		if x != 0 {
			return p, fmt.Errorf("%w: bytes after the end item", ErrPayload)
		}
	}
	return p, nil
}

// builder appends items to a payload of at most size bytes.
type builder struct {
	buf  []byte
	size int
}

func newBuilder(size int) *builder {
	b := &builder{buf: make([]byte, 1, size), size: size}
	b.buf[0] = Version
	return b
}

func (b *builder) room() int { return b.size - len(b.buf) }

// chunk appends a chunk item; symbols must be a whole number of T-byte
// symbols and fit.
func (b *builder) chunk(c *Chunk) bool {
	n := len(c.Symbols)
	if ChunkHeaderSize+n > b.room() || n == 0 || n%int(c.T) != 0 {
		return false
	}
	h := make([]byte, ChunkHeaderSize)
	h[0] = itemChunk
	copy(h[1:17], c.ID[:])
	h[17] = c.Flags
	binary.BigEndian.PutUint32(h[18:], c.Length)
	binary.BigEndian.PutUint16(h[22:], c.T)
	binary.BigEndian.PutUint16(h[24:], c.K)
	binary.BigEndian.PutUint16(h[26:], c.KPrime)
	binary.BigEndian.PutUint32(h[28:], c.ESI)
	binary.BigEndian.PutUint16(h[32:], uint16(n/int(c.T)))
	b.buf = append(append(b.buf, h...), c.Symbols...)
	return true
}

func (b *builder) surb(s *SURBItem) bool {
	if surbHeaderSize+len(s.SURB) > b.room() || len(s.SURB) == 0 || len(s.SURB) > 0xffff {
		return false
	}
	h := make([]byte, surbHeaderSize)
	h[0] = itemSURB
	copy(h[1:9], s.Stream[:])
	binary.BigEndian.PutUint64(h[9:], s.LowWater)
	binary.BigEndian.PutUint16(h[17:], uint16(len(s.SURB)))
	b.buf = append(append(b.buf, h...), s.SURB...)
	return true
}

// ack appends an ack item with as many of a's entries as fit (at most 255)
// and returns how many it took, or -1 if not even the header fits.
func (b *builder) ack(a *Ack) int {
	if ackHeaderSize > b.room() {
		return -1
	}
	n := min(len(a.Entries), 255, (b.room()-ackHeaderSize)/ackEntrySize)
	h := make([]byte, ackHeaderSize, ackHeaderSize+n*ackEntrySize)
	h[0] = itemAck
	copy(h[1:9], a.Stream[:])
	binary.BigEndian.PutUint64(h[9:], a.Cum)
	h[17] = byte(n)
	for _, e := range a.Entries[:n] {
		h = binary.BigEndian.AppendUint64(h, e.Seq)
		h = binary.BigEndian.AppendUint32(h, e.Need)
	}
	b.buf = append(b.buf, h...)
	return n
}

// Marshal encodes p into one payload of at most size bytes, or fails if it
// does not fit. (The queue packs incrementally; Marshal is for vectors,
// tests and tools.)
func (p *Payload) Marshal(size int) ([]byte, error) {
	if size < 1 {
		return nil, fmt.Errorf("%w: size %d", ErrPayload, size)
	}
	b := newBuilder(size)
	for i := range p.Acks {
		if b.ack(&p.Acks[i]) != len(p.Acks[i].Entries) {
			return nil, fmt.Errorf("%w: ack does not fit in %d bytes", ErrPayload, size)
		}
	}
	for i := range p.SURBs {
		if !b.surb(&p.SURBs[i]) {
			return nil, fmt.Errorf("%w: SURB does not fit in %d bytes", ErrPayload, size)
		}
	}
	for i := range p.Chunks {
		if !b.chunk(&p.Chunks[i]) {
			return nil, fmt.Errorf("%w: chunk does not fit in %d bytes", ErrPayload, size)
		}
	}
	return b.buf, nil
}
