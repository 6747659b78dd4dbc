package sphinx

import (
	"crypto/sha256"
	"fmt"
	"io"
)

// A SURB (single-use reply block) lets its holder send one reply to the SURB's
// creator without learning who or where the creator is. It is a header whose
// path ends with DeliverClient at the creator's home relay, the node to send
// the reply to, and a key that hides the reply from every hop. A reply packet
// is indistinguishable from a forward packet to every hop before the last.
type SURB struct {
	FirstHop NodeID
	Header   []byte // HeaderSize bytes
	Key      [SURBKeySize]byte
}

// ReplyKeys is what a SURB's creator keeps, under ID, to open the reply. It
// must stay secret and live as long as the epoch keys the SURB was made
// under.
type ReplyKeys struct {
	ID  SURBID
	key [SURBKeySize]byte
	prk [][32]byte // one per hop
}

func surbKeysSize(hops int) int { return SURBIDSize + 1 + SURBKeySize + hops*32 }

// NewSURB builds a SURB whose reply travels path and is delivered by the last
// hop (the creator's home relay) to the client holding token. It returns the
// SURB, for the replier, the keys to keep, and the reply's Route. Randomness
// (80 bytes, rarely more) is read from rand.
func (f *Format) NewSURB(rand io.Reader, path []Hop, token DeliveryToken, delay DelayPolicy) (*SURB, *ReplyKeys, Route, error) {
	if err := f.checkSend(path, DeliverToClient(token, SURBID{}), delay, nil); err != nil {
		return nil, nil, Route{}, err
	}
	st, err := f.pathKeys(rand, path)
	if err != nil {
		return nil, nil, Route{}, err
	}
	keys := &ReplyKeys{prk: st.prk}
	surb := &SURB{FirstHop: path[0].ID, Header: make([]byte, f.g.HeaderSize())}
	if _, err := io.ReadFull(rand, keys.key[:]); err != nil {
		return nil, nil, Route{}, fmt.Errorf("sphinx: read randomness: %w", err)
	}
	if _, err := io.ReadFull(rand, keys.ID[:]); err != nil {
		return nil, nil, Route{}, fmt.Errorf("sphinx: read randomness: %w", err)
	}
	surb.Key = keys.key
	f.buildHeader(sha256.New(), st, path, DeliverToClient(token, keys.ID), surb.Header)
	return surb, keys, st.route(delay), nil
}

// NewReply builds the reply packet for surb carrying msg (at most
// PayloadCapacity bytes). Send it to surb.FirstHop. A SURB must be used once:
// a second reply with it is dropped as a replay.
func (f *Format) NewReply(surb *SURB, msg []byte) ([]byte, error) {
	g := f.g
	if len(surb.Header) != g.HeaderSize() {
		return nil, fmt.Errorf("%w: header of %d bytes, want %d", ErrSURB, len(surb.Header), g.HeaderSize())
	}
	if len(msg) > g.PayloadCapacity() {
		return nil, fmt.Errorf("%w: message of %d bytes, capacity %d", ErrPayloadSize, len(msg), g.PayloadCapacity())
	}
	pkt := make([]byte, g.PacketSize())
	copy(pkt, surb.Header)
	payload := pkt[g.HeaderSize():]
	copy(payload[PayloadTagSize:], msg)
	var lk lionessKeys
	expandLioness(&surb.Key, &lk)
	var sum [sha256.Size]byte
	lionessEncrypt(sha256.New(), &lk, payload, &sum)
	return pkt, nil
}

// OpenReply decrypts, in place, the payload of a reply that the home relay
// delivered (Result.Payload of a DeliverClient hop) and returns the message
// (PayloadCapacity bytes, zero padded). It fails with ErrPayloadTag if the
// payload was tampered with or keys are not the SURB's.
func (f *Format) OpenReply(keys *ReplyKeys, payload []byte) ([]byte, error) {
	if len(payload) != f.g.PayloadSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrPayloadSize, len(payload), f.g.PayloadSize)
	}
	if len(keys.prk) == 0 || len(keys.prk) > f.g.MaxHops {
		return nil, fmt.Errorf("%w: reply keys for %d hops", ErrSURB, len(keys.prk))
	}
	h := sha256.New()
	var sum [sha256.Size]byte
	var hk hopKeys
	for i := len(keys.prk) - 1; i >= 0; i-- {
		expandHopKeys(&keys.prk[i], &hk)
		lionessEncrypt(h, &hk.lioness, payload, &sum)
	}
	var lk lionessKeys
	expandLioness(&keys.key, &lk)
	lionessDecrypt(h, &lk, payload, &sum)
	if !isZero(payload[:PayloadTagSize]) {
		return nil, ErrPayloadTag
	}
	return payload[PayloadTagSize:], nil
}

// MarshalBinary encodes s as FirstHop ‖ Header ‖ Key.
func (s *SURB) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, NodeIDSize+len(s.Header)+SURBKeySize)
	b = append(b, s.FirstHop[:]...)
	b = append(b, s.Header...)
	return append(b, s.Key[:]...), nil
}

// DecodeSURB decodes a SURB of f's geometry from b (exactly SURBSize bytes).
func (f *Format) DecodeSURB(b []byte) (*SURB, error) {
	if len(b) != f.g.SURBSize() {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrSURB, len(b), f.g.SURBSize())
	}
	s := &SURB{Header: make([]byte, f.g.HeaderSize())}
	b = b[copy(s.FirstHop[:], b):]
	b = b[copy(s.Header, b):]
	copy(s.Key[:], b)
	return s, nil
}

// Hops returns the number of hops of the SURB's path.
func (k *ReplyKeys) Hops() int { return len(k.prk) }

// MarshalBinary encodes k as ID ‖ hops (1 byte) ‖ key ‖ one 32-byte hop key a
// hop.
func (k *ReplyKeys) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, surbKeysSize(len(k.prk)))
	b = append(b, k.ID[:]...)
	b = append(b, byte(len(k.prk)))
	b = append(b, k.key[:]...)
	for _, p := range k.prk {
		b = append(b, p[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes reply keys encoded by MarshalBinary.
func (k *ReplyKeys) UnmarshalBinary(b []byte) error {
	if len(b) < surbKeysSize(1) {
		return fmt.Errorf("%w: reply keys of %d bytes", ErrSURB, len(b))
	}
	n := int(b[SURBIDSize])
	if n < 1 || n > MaxHopsLimit || len(b) != surbKeysSize(n) {
		return fmt.Errorf("%w: reply keys of %d bytes for %d hops", ErrSURB, len(b), n)
	}
	copy(k.ID[:], b)
	b = b[SURBIDSize+1:]
	b = b[copy(k.key[:], b):]
	k.prk = make([][32]byte, n)
	for i := range k.prk {
		b = b[copy(k.prk[i][:], b):]
	}
	return nil
}
