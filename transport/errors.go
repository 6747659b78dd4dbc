package transport

import "errors"

// Errors returned by the package; test for them with errors.Is.
var (
	// ErrQueueFull means the peer's send queue is full and the packet was not
	// queued. The peer is slow, stuck or being redialled.
	ErrQueueFull = errors.New("send queue full")
	// ErrUnreachable means the last attempt to open a stream to the peer
	// failed and its redial backoff has not expired (or a redial is under
	// way): the packet was not queued, and what was queued was dropped.
	// The first send after the backoff expires is queued and triggers the
	// redial.
	ErrUnreachable = errors.New("peer unreachable")
	// ErrUnknownPeer means Send was asked for a node that was never added with
	// AddPeer and has no open connection to this host.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrPacketSize means a packet is not exactly Config.PacketSize bytes.
	ErrPacketSize = errors.New("wrong packet size")
	// ErrClosed means the host has been closed.
	ErrClosed = errors.New("host closed")
	// ErrNodeIDMismatch means a PeerInfo's ID is not the hash of its key.
	ErrNodeIDMismatch = errors.New("node id does not match public key")
	// ErrNotEd25519 means a key is not an Ed25519 key of the right size.
	ErrNotEd25519 = errors.New("not an Ed25519 key")
	// ErrBadIdentity means an identity file or its contents are malformed.
	ErrBadIdentity = errors.New("malformed identity key")
	// ErrIdentityPermissions means an identity file can be read or written
	// by group or others.
	ErrIdentityPermissions = errors.New("identity file is accessible by group or others")
	// ErrFrameSize means a received frame's length prefix is not the
	// configured packet size.
	ErrFrameSize = errors.New("wrong frame size")
	// ErrSelf means a packet was addressed to the sending host itself.
	ErrSelf = errors.New("packet addressed to self")
	// ErrRequestRefused means a requested node was reached but gave no
	// answer: it does not handle the protocol, its handler returned an
	// error, it reset or ended the stream early, or its answer was too
	// large.
	ErrRequestRefused = errors.New("request refused")
	// ErrRequestSize means a request or response message is longer than
	// MaxRequestSize.
	ErrRequestSize = errors.New("request message too large")
)
