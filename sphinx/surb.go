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

// ReplyKeys is what a SURB's creator keeps, under ID, to open the reply: the
// reply key and the Lioness keys of every hop's payload layer, and nothing
// else of the hops' key schedules (no hop's prk, header, MAC or blinding key,
// replay tag or delay word), so stolen reply keys neither rebuild the SURB's
// headers nor its replay tags. They must stay secret (they open the reply and
// let whoever holds them follow its payload from hop to hop) and live as long
// as the epoch keys the SURB was made under.
type ReplyKeys struct {
	ID     SURBID
	key    [SURBKeySize]byte
	layers []lionessKeys // hop i's payload Lioness keys, one per hop
}

// ReplyKeysVersion is the format byte that opens encoded [ReplyKeys]. The
// unversioned format 1 (which kept every hop's full key) is refused with
// ErrReplyKeysVersion.
const ReplyKeysVersion = 2

// replyKeysHeader is the size of an encoding's fixed part: version, ID, hop
// count and reply key.
const replyKeysHeader = 1 + SURBIDSize + 1 + SURBKeySize

// surbKeysSize is the size of encoded reply keys for a path of hops hops.
func surbKeysSize(hops int) int { return replyKeysHeader + hops*4*lionessKeySize }

// surbKeysSizeV1 is the size of format-1 reply keys (ID ‖ hops ‖ key ‖ hops ×
// 32): always odd, while format 2's size is always even.
func surbKeysSizeV1(hops int) int { return SURBIDSize + 1 + SURBKeySize + hops*32 }

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
	keys := &ReplyKeys{layers: make([]lionessKeys, len(path))}
	for i := range st.keys {
		keys.layers[i] = st.keys[i].lioness
	}
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
	if len(keys.layers) == 0 || len(keys.layers) > f.g.MaxHops {
		return nil, fmt.Errorf("%w: reply keys for %d hops", ErrSURB, len(keys.layers))
	}
	h := sha256.New()
	var sum [sha256.Size]byte
	for i := len(keys.layers) - 1; i >= 0; i-- {
		lionessEncrypt(h, &keys.layers[i], payload, &sum)
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
func (k *ReplyKeys) Hops() int { return len(k.layers) }

// MarshalBinary encodes k in format [ReplyKeysVersion]: version (1 byte) ‖ ID
// ‖ hops (1 byte) ‖ reply key ‖ for each hop in path order its four Lioness
// keys K1 ‖ K2 ‖ K3 ‖ K4 (128 bytes).
func (k *ReplyKeys) MarshalBinary() ([]byte, error) {
	if len(k.layers) == 0 || len(k.layers) > MaxHopsLimit {
		return nil, fmt.Errorf("%w: reply keys for %d hops", ErrSURB, len(k.layers))
	}
	b := make([]byte, 0, surbKeysSize(len(k.layers)))
	b = append(b, ReplyKeysVersion)
	b = append(b, k.ID[:]...)
	b = append(b, byte(len(k.layers)))
	b = append(b, k.key[:]...)
	for i := range k.layers {
		for j := range k.layers[i] {
			b = append(b, k.layers[i][j][:]...)
		}
	}
	return b, nil
}

// UnmarshalBinary decodes reply keys encoded by MarshalBinary. It accepts
// only format [ReplyKeysVersion] with 1 to MaxHopsLimit hops and exactly
// their size. Errors wrap ErrSURB; a record of another format (the
// unversioned format 1, or any non-empty record whose first byte is not
// ReplyKeysVersion, whatever its length) also wraps ErrReplyKeysVersion. On
// error k is unchanged.
func (k *ReplyKeys) UnmarshalBinary(b []byte) error {
	if len(b)%2 == 1 && len(b) > SURBIDSize {
		if n := int(b[SURBIDSize]); n >= 1 && n <= MaxHopsLimit && len(b) == surbKeysSizeV1(n) {
			return fmt.Errorf("%w: %w: %d bytes in the unversioned format 1 (%d hops), which kept every hop's full key and is no longer read",
				ErrSURB, ErrReplyKeysVersion, len(b), n)
		}
	}
	if len(b) > 0 && b[0] != ReplyKeysVersion {
		return fmt.Errorf("%w: %w: format %d, want %d", ErrSURB, ErrReplyKeysVersion, b[0], ReplyKeysVersion)
	}
	if len(b) < surbKeysSize(1) {
		return fmt.Errorf("%w: reply keys of %d bytes, want at least %d", ErrSURB, len(b), surbKeysSize(1))
	}
	n := int(b[1+SURBIDSize])
	if n < 1 || n > MaxHopsLimit || len(b) != surbKeysSize(n) {
		return fmt.Errorf("%w: reply keys of %d bytes for %d hops, want %d", ErrSURB, len(b), n, surbKeysSize(n))
	}
	b = b[1:]
	b = b[copy(k.ID[:], b)+1:]
	b = b[copy(k.key[:], b):]
	k.layers = make([]lionessKeys, n)
	for i := range k.layers {
		for j := range k.layers[i] {
			b = b[copy(k.layers[i][j][:], b):]
		}
	}
	return nil
}
