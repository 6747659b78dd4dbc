package sphinx

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"time"

	"filippo.io/edwards25519"
	"github.com/cloudflare/circl/dh/x25519"
)

// Hop is one node of a path as the sender sees it: its id (named in the
// previous hop's Forward command) and its mix public key for the epoch.
type Hop struct {
	ID  NodeID
	Key PublicKey
}

// Route is what the sender knows of a packet's journey: the delay each hop
// will hold it for (zero at the final hop, which does not forward), and their
// sum, the packet's total mixing latency.
type Route struct {
	Delays []time.Duration
	Total  time.Duration
}

// maxSecretDraws bounds how often the sender redraws its secret when
// clampRep fails, which happens with probability about 2⁻¹²⁵ a hop.
const maxSecretDraws = 4

// pathState is the sender's view of every hop of a path.
type pathState struct {
	alpha x25519.Key // α₀, the only group element the sender sends
	keys  []hopKeys
}

// NewPacket builds a forward packet that travels path and ends with command
// final at the last hop, carrying msg (at most PayloadCapacity bytes, padded
// with zeros). It returns the packet, to be sent to path[0], and its Route.
// Randomness (32 bytes, rarely more) is read from rand.
func (f *Format) NewPacket(rand io.Reader, path []Hop, final Command, delay DelayPolicy, msg []byte) ([]byte, Route, error) {
	if err := f.checkSend(path, final, delay, msg); err != nil {
		return nil, Route{}, err
	}
	st, err := f.pathKeys(rand, path)
	if err != nil {
		return nil, Route{}, err
	}
	g := f.g
	pkt := make([]byte, g.PacketSize())
	h := sha256.New()
	f.buildHeader(h, st, path, final, pkt[:g.HeaderSize()])
	payload := pkt[g.HeaderSize():]
	copy(payload[PayloadTagSize:], msg)
	var sum [sha256.Size]byte
	for i := len(path) - 1; i >= 0; i-- {
		lionessEncrypt(h, &st.keys[i].lioness, payload, &sum)
	}
	return pkt, st.route(delay), nil
}

func (f *Format) checkSend(path []Hop, final Command, delay DelayPolicy, msg []byte) error {
	if len(path) == 0 || len(path) > f.g.MaxHops {
		return fmt.Errorf("%w: %d hops, geometry allows 1 to %d", ErrPath, len(path), f.g.MaxHops)
	}
	if !final.Kind.Final() {
		return fmt.Errorf("%w: final command %v does not end a path", ErrPath, final.Kind)
	}
	if err := final.validate(); err != nil {
		return err
	}
	if err := delay.Validate(); err != nil {
		return err
	}
	if len(msg) > f.g.PayloadCapacity() {
		return fmt.Errorf("%w: message of %d bytes, capacity %d", ErrPayloadSize, len(msg), f.g.PayloadCapacity())
	}
	return nil
}

// pathKeys draws the sender's secret and derives every hop's α and keys.
func (f *Format) pathKeys(rand io.Reader, path []Hop) (*pathState, error) {
	st := &pathState{
		keys: make([]hopKeys, len(path)),
	}
	for range maxSecretDraws {
		var x [32]byte
		if _, err := io.ReadFull(rand, x[:]); err != nil {
			return nil, fmt.Errorf("sphinx: read randomness: %w", err)
		}
		ok, err := f.tryPathKeys(st, clampedScalar(&x), path)
		if err != nil || ok {
			return st, err
		}
	}
	return nil, fmt.Errorf("sphinx: no usable secret in %d draws: randomness is broken", maxSecretDraws)
}

// tryPathKeys fills st from the sender's secret scalar t. It reports false
// when t needs redrawing.
func (f *Format) tryPathKeys(st *pathState, t *edwards25519.Scalar, path []Hop) (bool, error) {
	for i, hop := range path {
		k, ok := f.field.clampRep(t)
		if !ok {
			return false, nil
		}
		if i == 0 {
			x25519.KeyGen(&st.alpha, &k)
		}
		var s x25519.Key
		if !x25519.Shared(&s, &k, (*x25519.Key)(&hop.Key)) {
			return false, fmt.Errorf("%w: public key of hop %d has small order", ErrGroupElement, i)
		}
		deriveHopKeys((*[32]byte)(&s), &st.keys[i])
		t = edwards25519.NewScalar().Multiply(t, clampedScalar(&st.keys[i].blind))
	}
	return true, nil
}

// buildHeader writes the header for st into hdr (HeaderSize bytes).
func (f *Format) buildHeader(h hash.Hash, st *pathState, path []Hop, final Command, hdr []byte) {
	g := f.g
	n := len(path)
	B := g.RoutingSize()
	const R = RoutingInfoSize

	// The filler is what hops 0…n-2 shift into the end of β; the sender
	// precomputes it so that the last hop's MAC covers it.
	streams := make([][]byte, n)
	for i := range streams {
		streams[i] = make([]byte, B+R)
		keyStream(&st.keys[i].header, streams[i])
	}
	filler := make([]byte, 0, (n-1)*R)
	for i := 0; i < n-1; i++ {
		filler = append(filler, make([]byte, R)...)
		subtleXOR(filler, filler, streams[i][B-i*R:])
	}

	beta := make([]byte, B)
	final.put(beta[:CommandSize])
	subtleXOR(beta[:B-(n-1)*R], beta[:B-(n-1)*R], streams[n-1])
	copy(beta[B-(n-1)*R:], filler)
	var gamma [sha256.Size]byte
	headerMAC(h, &st.keys[n-1].mac, beta, &gamma)
	for i := n - 2; i >= 0; i-- {
		next := make([]byte, B)
		ForwardTo(path[i+1].ID).put(next[:CommandSize])
		copy(next[CommandSize:R], gamma[:MACSize])
		copy(next[R:], beta[:B-R])
		subtleXOR(beta, next, streams[i])
		headerMAC(h, &st.keys[i].mac, beta, &gamma)
	}
	copy(hdr, st.alpha[:])
	copy(hdr[GroupElementSize:], beta)
	copy(hdr[GroupElementSize+B:], gamma[:MACSize])
}

// route returns the delays the hops of st will apply.
func (st *pathState) route(delay DelayPolicy) Route {
	r := Route{Delays: make([]time.Duration, len(st.keys))}
	for i := range len(st.keys) - 1 {
		r.Delays[i] = delay.Sample(st.keys[i].delay)
		r.Total += r.Delays[i]
	}
	return r
}
