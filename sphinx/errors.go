package sphinx

import "errors"

// Errors returned by the package. Callers test them with errors.Is; returned
// errors may wrap them with detail.
var (
	// ErrPacketSize means a packet does not have the geometry's size.
	ErrPacketSize = errors.New("sphinx: wrong packet size")
	// ErrGroupElement means a header's α, or a public key, is a point of
	// small order, so no shared secret can be formed with it.
	ErrGroupElement = errors.New("sphinx: bad group element")
	// ErrMAC means a header MAC did not verify: the header was altered,
	// or the packet was not made for this node's key.
	ErrMAC = errors.New("sphinx: header MAC mismatch")
	// ErrCommand means a routing command could not be decoded.
	ErrCommand = errors.New("sphinx: bad routing command")
	// ErrPayloadTag means a payload's zero tag was altered on the way: the
	// payload was tampered with and is lost.
	ErrPayloadTag = errors.New("sphinx: payload tampered")
	// ErrPath means a path is empty, too long for the geometry, or asks a
	// hop to do something only a final hop may do.
	ErrPath = errors.New("sphinx: bad path")
	// ErrPayloadSize means a message is larger than the payload capacity,
	// or a payload buffer does not have the geometry's payload size.
	ErrPayloadSize = errors.New("sphinx: bad payload size")
	// ErrSURB means an encoded SURB or SURB key record is malformed.
	ErrSURB = errors.New("sphinx: malformed SURB")
	// ErrReplyKeysVersion means encoded reply keys are of a format this
	// version does not read (see ReplyKeysVersion), such as records written
	// before reply keys were versioned. It comes wrapped with ErrSURB.
	ErrReplyKeysVersion = errors.New("sphinx: unsupported reply keys format")
)
