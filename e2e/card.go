package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// NodeIDSize and MailboxIDSize match sphinx.NodeIDSize and mailbox.IDSize.
const (
	NodeIDSize    = 32
	MailboxIDSize = 16
)

// Address is one mailbox: the mailbox node that holds it and the mailbox id.
type Address struct {
	Node    [NodeIDSize]byte
	Mailbox [MailboxIDSize]byte
}

// Transport delivers one payload to mailboxes. It is implemented by the
// caller over the mixnet (package client and mailbox: a Put per address,
// chunked by package queue if the payload is larger than one packet);
// package e2e never touches the network.
type Transport interface {
	Deliver(ctx context.Context, to []Address, payload []byte) error
}

// Card limits.
const (
	maxName        = 64
	maxAddresses   = 8
	maxKeyPackages = 8
	maxSURBs       = 8
	maxBlob        = 4096
	cardVersion    = 1
	cardCodePrefix = "strata1"
	cardSigContext = "strata-e2e-card-v1"
)

// Card is a contact card: what someone needs to talk to us. It is signed by
// the identity key.
type Card struct {
	Name        string
	Key         ed25519.PublicKey
	Addresses   []Address
	KeyPackages [][]byte // MLS key packages (public), each usable once
	SURBs       [][]byte // opaque reply blocks for a first answer
	Signature   []byte
}

// Errors of the card codec.
var (
	ErrCardMalformed = errors.New("e2e: malformed contact card")
	ErrCardChecksum  = errors.New("e2e: contact code checksum mismatch (typo?)")
	ErrCardSignature = errors.New("e2e: contact card signature invalid")
)

// body is the canonical encoding without the signature:
//
//	u8 version=1 | u8 len | name | key[32]
//	| u8 n | n × (node[32] mailbox[16])
//	| u8 n | n × (u16 len | key package)
//	| u8 n | n × (u16 len | SURB)
func (c *Card) body() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	b := []byte{cardVersion, byte(len(c.Name))}
	b = append(b, c.Name...)
	b = append(b, c.Key...)
	b = append(b, byte(len(c.Addresses)))
	for _, a := range c.Addresses {
		b = append(b, a.Node[:]...)
		b = append(b, a.Mailbox[:]...)
	}
	for _, list := range [][][]byte{c.KeyPackages, c.SURBs} {
		b = append(b, byte(len(list)))
		for _, x := range list {
			b = binary.BigEndian.AppendUint16(b, uint16(len(x)))
			b = append(b, x...)
		}
	}
	return b, nil
}

func (c *Card) check() error {
	switch {
	case len(c.Name) == 0 || len(c.Name) > maxName || !utf8.ValidString(c.Name):
		return fmt.Errorf("%w: name", ErrCardMalformed)
	case len(c.Key) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: key", ErrCardMalformed)
	case len(c.Addresses) == 0 || len(c.Addresses) > maxAddresses:
		return fmt.Errorf("%w: %d addresses", ErrCardMalformed, len(c.Addresses))
	case len(c.KeyPackages) == 0 || len(c.KeyPackages) > maxKeyPackages:
		return fmt.Errorf("%w: %d key packages", ErrCardMalformed, len(c.KeyPackages))
	case len(c.SURBs) > maxSURBs:
		return fmt.Errorf("%w: %d SURBs", ErrCardMalformed, len(c.SURBs))
	}
	for _, list := range [][][]byte{c.KeyPackages, c.SURBs} {
		for _, x := range list {
			if len(x) == 0 || len(x) > maxBlob {
				return fmt.Errorf("%w: blob of %d bytes", ErrCardMalformed, len(x))
			}
		}
	}
	return nil
}

func cardSigned(body []byte) []byte { return append([]byte(cardSigContext), body...) }

// Sign fills c.Key and c.Signature from id.
func (c *Card) Sign(id *Identity) error {
	c.Key = id.Public()
	body, err := c.body()
	if err != nil {
		return err
	}
	c.Signature = ed25519.Sign(id.Key, cardSigned(body))
	return nil
}

// MarshalBinary is the canonical encoding: body | signature[64].
func (c *Card) MarshalBinary() ([]byte, error) {
	body, err := c.body()
	if err != nil {
		return nil, err
	}
	if len(c.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: unsigned", ErrCardMalformed)
	}
	return append(body, c.Signature...), nil
}

type reader struct {
	b   []byte
	err bool
}

func (r *reader) take(n int) []byte {
	if r.err || n > len(r.b) {
		r.err = true
		return nil
	}
	x := r.b[:n]
	r.b = r.b[n:]
	return x
}

func (r *reader) u8() int {
	x := r.take(1)
	if x == nil {
		return 0
	}
	return int(x[0])
}

func (r *reader) u16() int {
	x := r.take(2)
	if x == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(x))
}

// ParseCard decodes and verifies a card's canonical encoding. It checks the
// signature but not the key packages (Manager.AddContact does).
func ParseCard(b []byte) (*Card, error) {
	r := &reader{b: b}
	if v := r.u8(); v != cardVersion {
		return nil, fmt.Errorf("%w: version %d", ErrCardMalformed, v)
	}
	c := &Card{}
	c.Name = string(r.take(r.u8()))
	c.Key = bytes.Clone(r.take(ed25519.PublicKeySize))
	n := r.u8()
	if n > maxAddresses {
		return nil, fmt.Errorf("%w: %d addresses", ErrCardMalformed, n)
	}
	for i := 0; i < n && !r.err; i++ {
		var a Address
		copy(a.Node[:], r.take(NodeIDSize))
		copy(a.Mailbox[:], r.take(MailboxIDSize))
		c.Addresses = append(c.Addresses, a)
	}
	for _, list := range []*[][]byte{&c.KeyPackages, &c.SURBs} {
		n := r.u8()
		if n > maxKeyPackages {
			return nil, fmt.Errorf("%w: list of %d", ErrCardMalformed, n)
		}
		for i := 0; i < n && !r.err; i++ {
			*list = append(*list, bytes.Clone(r.take(r.u16())))
		}
	}
	bodyLen := len(b) - len(r.b)
	c.Signature = bytes.Clone(r.take(ed25519.SignatureSize))
	if r.err {
		return nil, fmt.Errorf("%w: truncated", ErrCardMalformed)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCardMalformed, len(r.b))
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if !ed25519.Verify(c.Key, cardSigned(b[:bodyLen]), c.Signature) {
		return nil, ErrCardSignature
	}
	return c, nil
}

var codeEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

// Code is the card as text: "strata1" followed by lowercase base32 (RFC
// 4648, no padding) of the binary card and the first 4 bytes of its
// SHA-256 (a checksum that catches typos).
func (c *Card) Code() (string, error) {
	b, err := c.MarshalBinary()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return cardCodePrefix + strings.ToLower(codeEnc.EncodeToString(append(b, sum[:4]...))), nil
}

// ParseCode decodes a text code (case-insensitive; spaces and newlines
// are ignored).
func ParseCode(code string) (*Card, error) {
	code = strings.Join(strings.Fields(code), "")
	if len(code) < len(cardCodePrefix) || !strings.EqualFold(code[:len(cardCodePrefix)], cardCodePrefix) {
		return nil, fmt.Errorf("%w: not a strata1 code", ErrCardMalformed)
	}
	raw, err := codeEnc.DecodeString(strings.ToUpper(code[len(cardCodePrefix):]))
	if err != nil {
		return nil, fmt.Errorf("%w: base32: %v", ErrCardMalformed, err)
	}
	if len(raw) < 4 {
		return nil, fmt.Errorf("%w: too short", ErrCardMalformed)
	}
	b, check := raw[:len(raw)-4], raw[len(raw)-4:]
	sum := sha256.Sum256(b)
	if !bytes.Equal(sum[:4], check) {
		return nil, ErrCardChecksum
	}
	return ParseCard(b)
}
