package transport

import "time"

// ProtocolID is the libp2p protocol id of the mix protocol. A stream of this
// protocol carries frames in one direction only: the opener writes, the
// acceptor reads.
const ProtocolID = "/strata/mix/1"

// frameHeaderSize is the length of the big-endian uint16 length prefix of a
// frame. It bounds the packet size to maxPacketSize.
const frameHeaderSize = 2

// maxPacketSize is the largest packet an entry frame header can describe:
// PacketSize+EntryHeaderSize must fit the uint16 length.
const maxPacketSize = 1<<16 - 1 - EntryHeaderSize

// EntryHeaderSize is the length of the next-hop field that precedes the
// packet in an entry frame: one NodeID.
const EntryHeaderSize = 32

// Defaults for the zero fields of Config.
const (
	defaultSendQueue         = 512
	defaultMaxStreamsPerPeer = 4
	defaultWriteTimeout      = 10 * time.Second
	defaultDialTimeout       = 10 * time.Second
	defaultRequestTimeout    = 10 * time.Second
	defaultBanDuration       = 30 * time.Second
)

// Buffer and batch sizes of the framing path. The writer buffer holds many
// frames so that one flush becomes one large yamux or QUIC write; a batch is
// capped so that one write deadline never covers an unbounded amount of data.
const (
	writeBufferSize = 64 << 10
	readBufferSize  = 64 << 10
	maxBatchFrames  = 128
)

// Redial backoff: exponential from backoffMin to backoffMax with ±25 % jitter,
// reset after a stream to the peer has carried a successful flush.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 30 * time.Second
)
