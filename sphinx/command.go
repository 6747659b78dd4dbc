package sphinx

import (
	"encoding/hex"
	"fmt"
)

const commandArgSize = 32

// NodeID names a node (relay or mailbox): the hash of its identity key.
type NodeID [NodeIDSize]byte

// String returns the first 8 bytes of id in hex.
func (id NodeID) String() string { return hex.EncodeToString(id[:8]) }

// SURBID names a SURB; its creator keys the reply keys by it.
type SURBID [SURBIDSize]byte

// DeliveryToken tells a home relay which of its clients a packet is for.
type DeliveryToken [DeliveryTokenSize]byte

// LoopID names a loop packet for the node that sent it.
type LoopID [commandArgSize]byte

// CommandKind is the one-byte kind of a routing command.
type CommandKind uint8

// The routing command kinds. Forward is the only non-final command: it tells a
// relay to delay the packet and pass it on. The others end the packet's path.
const (
	// Forward: delay the packet and send it to the next node.
	Forward CommandKind = 1
	// DeliverMailbox: this node is a mailbox and the payload is for it.
	DeliverMailbox CommandKind = 2
	// DeliverClient: this node is a client's home relay; push the
	// (still encrypted) payload to the client named by the delivery token.
	// It ends every SURB reply.
	DeliverClient CommandKind = 3
	// Drop: the packet is cover traffic; discard it.
	Drop CommandKind = 4
	// Loop: the packet is a loop this node sent to itself.
	Loop CommandKind = 5
)

// String returns the kind's name.
func (k CommandKind) String() string {
	switch k {
	case Forward:
		return "forward"
	case DeliverMailbox:
		return "deliver-mailbox"
	case DeliverClient:
		return "deliver-client"
	case Drop:
		return "drop"
	case Loop:
		return "loop"
	}
	return fmt.Sprintf("command(%d)", uint8(k))
}

// Final reports whether the kind ends a path.
func (k CommandKind) Final() bool { return k != Forward }

// Command is one hop's routing command: a kind and its 32-byte argument, whose
// meaning depends on the kind. Build commands with [ForwardTo],
// [DeliverToMailbox], [DeliverToClient], [DropCover] and [LoopBack].
type Command struct {
	Kind CommandKind
	Arg  [commandArgSize]byte
}

// ForwardTo returns the command to pass a packet on to node next.
func ForwardTo(next NodeID) Command { return Command{Kind: Forward, Arg: next} }

// DeliverToMailbox returns the final command of a packet for a mailbox node.
func DeliverToMailbox() Command { return Command{Kind: DeliverMailbox} }

// DeliverToClient returns the final command of a SURB: the home relay pushes
// the payload to the client that holds token, and the client opens it with
// the keys it stored under id.
func DeliverToClient(token DeliveryToken, id SURBID) Command {
	c := Command{Kind: DeliverClient}
	copy(c.Arg[:DeliveryTokenSize], token[:])
	copy(c.Arg[DeliveryTokenSize:], id[:])
	return c
}

// DropCover returns the final command of a drop cover packet.
func DropCover() Command { return Command{Kind: Drop} }

// LoopBack returns the final command of a loop packet a node sends to itself.
func LoopBack(id LoopID) Command { return Command{Kind: Loop, Arg: id} }

// NextHop returns the node a Forward command names.
func (c Command) NextHop() NodeID { return NodeID(c.Arg) }

// Token returns the delivery token of a DeliverClient command.
func (c Command) Token() DeliveryToken { return DeliveryToken(c.Arg[:DeliveryTokenSize]) }

// SURBID returns the SURB id of a DeliverClient command.
func (c Command) SURBID() SURBID { return SURBID(c.Arg[DeliveryTokenSize:]) }

// LoopID returns the id of a Loop command.
func (c Command) LoopID() LoopID { return LoopID(c.Arg) }

// String describes the command for logs.
func (c Command) String() string {
	switch c.Kind {
	case Forward:
		return "forward to " + c.NextHop().String()
	case DeliverClient:
		return "deliver to client " + hex.EncodeToString(c.Arg[:DeliveryTokenSize])
	case Loop:
		return "loop " + hex.EncodeToString(c.Arg[:8])
	}
	return c.Kind.String()
}

// MarshalBinary encodes c as its CommandSize bytes.
func (c Command) MarshalBinary() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, CommandSize)
	c.put(b)
	return b, nil
}

// UnmarshalBinary decodes a command from exactly CommandSize bytes.
func (c *Command) UnmarshalBinary(b []byte) error {
	if len(b) != CommandSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrCommand, len(b), CommandSize)
	}
	return c.decode(b)
}

func (c Command) put(b []byte) {
	b[0] = byte(c.Kind)
	copy(b[1:CommandSize], c.Arg[:])
}

// decode reads a command from b[:CommandSize] without allocating.
func (c *Command) decode(b []byte) error {
	c.Kind = CommandKind(b[0])
	copy(c.Arg[:], b[1:CommandSize])
	return c.validate()
}

// validate rejects unknown kinds, and arguments on kinds that take none, so
// that every command has exactly one encoding.
func (c *Command) validate() error {
	switch c.Kind {
	case Forward, DeliverClient, Loop:
		return nil
	case DeliverMailbox, Drop:
		if c.Arg != [commandArgSize]byte{} {
			return fmt.Errorf("%w: %v with a non-zero argument", ErrCommand, c.Kind)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown kind %d", ErrCommand, uint8(c.Kind))
}
