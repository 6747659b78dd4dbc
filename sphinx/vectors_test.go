package sphinx

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/strata-mix/strata/internal/testvec"
	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/curve25519"
)

var updateVectors = flag.Bool("update", false, "regenerate testdata/vectors.json")

const vectorsPath = "testdata/vectors.json"

type hexBytes = testvec.Hex

type vectorFile struct {
	Comment     string       `json:"comment"`
	MaxHops     int          `json:"max_hops"`
	PayloadSize int          `json:"payload_size"`
	DelayMeanNS int64        `json:"delay_mean_ns"`
	Cases       []vectorCase `json:"cases"`
}

type vectorHop struct {
	ID         hexBytes `json:"id"`
	PrivateKey hexBytes `json:"private_key"`
	PublicKey  hexBytes `json:"public_key"`
}

type vectorStep struct {
	Command   hexBytes `json:"command"`
	DelayNS   int64    `json:"delay_ns"`
	ReplayTag hexBytes `json:"replay_tag"`
	Output    hexBytes `json:"output"`
}

type vectorCase struct {
	Name          string       `json:"name"`
	Kind          string       `json:"kind"` // "packet" or "surb"
	Hops          []vectorHop  `json:"hops"`
	Final         hexBytes     `json:"final_command,omitempty"`
	Token         hexBytes     `json:"delivery_token,omitempty"`
	Randomness    hexBytes     `json:"randomness"`
	Message       hexBytes     `json:"message"`
	SURB          hexBytes     `json:"surb,omitempty"`
	ReplyKeys     hexBytes     `json:"reply_keys,omitempty"`
	Packet        hexBytes     `json:"packet"`
	RouteDelaysNS []int64      `json:"route_delays_ns"`
	Steps         []vectorStep `json:"steps"`
	Opened        hexBytes     `json:"opened,omitempty"`
}

const vectorComment = "Strata Sphinx test vectors (docs/sphinx.md). For each case, " +
	"'randomness' is the exact byte stream the sender reads (x, then for SURBs the reply key and the SURB id). " +
	"'packet' is NewPacket's output, or for SURB cases NewReply's output for 'message'. " +
	"'steps' list what each hop's Unwrap yields: the command, the delay, the replay tag and the output " +
	"(the next packet for forward hops, the payload for final hops). 'opened' is OpenReply's output."

// makeVectorCase runs one case from its inputs.
func makeVectorCase(t *testing.T, f *Format, c vectorCase, delay DelayPolicy) vectorCase {
	t.Helper()
	nodes := make([]testNode, len(c.Hops))
	for i, h := range c.Hops {
		nodes[i].id = NodeID(h.ID)
		priv := PrivateKey(h.PrivateKey)
		nodes[i].priv = &priv
		nodes[i].pub = priv.Public()
	}
	rnd := bytes.NewReader(c.Randomness)
	var route Route
	var keys *ReplyKeys
	var err error
	switch c.Kind {
	case "packet":
		var final Command
		if err := final.UnmarshalBinary(c.Final); err != nil {
			t.Fatal(err)
		}
		c.Packet, route, err = f.NewPacket(rnd, pathOf(nodes), final, delay, c.Message)
	case "surb":
		var surb *SURB
		surb, keys, route, err = f.NewSURB(rnd, pathOf(nodes), DeliveryToken(c.Token), delay)
		if err == nil {
			c.SURB, _ = surb.MarshalBinary()
			c.ReplyKeys, _ = keys.MarshalBinary()
			c.Packet, err = f.NewReply(surb, c.Message)
		}
	default:
		t.Fatalf("unknown case kind %q", c.Kind)
	}
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	if rnd.Len() != 0 {
		t.Fatalf("%s: %d bytes of randomness unused", c.Name, rnd.Len())
	}
	c.RouteDelaysNS = nil
	for _, d := range route.Delays {
		c.RouteDelaysNS = append(c.RouteDelaysNS, int64(d))
	}
	pkt := bytes.Clone(c.Packet)
	c.Steps = nil
	var res Result
	for i, n := range nodes {
		if err := f.Unwrap(n.priv, delay, pkt, &res); err != nil {
			t.Fatalf("%s: hop %d: %v", c.Name, i, err)
		}
		cmd, _ := res.Command.MarshalBinary()
		out := pkt
		if res.Command.Kind.Final() {
			out = res.Payload
		}
		c.Steps = append(c.Steps, vectorStep{Command: cmd, DelayNS: int64(res.Delay), ReplayTag: bytes.Clone(res.ReplayTag[:]), Output: bytes.Clone(out)})
	}
	c.Opened = nil
	if keys != nil {
		opened, err := f.OpenReply(keys, res.Payload)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		c.Opened = bytes.Clone(opened)
	}
	return c
}

// vectorInputs returns the inputs of the published cases.
func vectorInputs() []vectorCase {
	rnd := testRand(0x5eed)
	hops := func(n int) []vectorHop {
		hs := make([]vectorHop, n)
		for i := range hs {
			hs[i].ID = randomBytes(rnd, NodeIDSize)
			hs[i].PrivateKey = randomBytes(rnd, KeySize)
			priv := PrivateKey(hs[i].PrivateKey)
			pub := priv.Public()
			hs[i].PublicKey = pub[:]
		}
		return hs
	}
	cmd := func(c Command) hexBytes { b, _ := c.MarshalBinary(); return b }
	var loop LoopID
	copy(loop[:], "loop id of a relay's cover loop.")
	return []vectorCase{
		{Name: "forward 3 hops to a mailbox", Kind: "packet", Hops: hops(4), Final: cmd(DeliverToMailbox()),
			Randomness: randomBytes(rnd, 32), Message: []byte("Strata test vector: forward to mailbox")},
		{Name: "loop over 5 hops", Kind: "packet", Hops: hops(5), Final: cmd(LoopBack(loop)),
			Randomness: randomBytes(rnd, 32), Message: []byte("loop")},
		{Name: "drop cover over 1 hop", Kind: "packet", Hops: hops(1), Final: cmd(DropCover()),
			Randomness: randomBytes(rnd, 32), Message: nil},
		{Name: "SURB reply over 4 hops", Kind: "surb", Hops: hops(4), Token: randomBytes(rnd, DeliveryTokenSize),
			Randomness: randomBytes(rnd, 32+SURBKeySize+SURBIDSize), Message: []byte("Strata test vector: reply")},
	}
}

func TestVectors(t *testing.T) {
	f := testFormat(t)
	delay := DelayPolicy{Mean: 50 * time.Millisecond}
	var vf vectorFile
	testvec.Load(t, vectorsPath, *updateVectors, func() any {
		vf := vectorFile{Comment: vectorComment, MaxHops: f.Geometry().MaxHops, PayloadSize: f.Geometry().PayloadSize, DelayMeanNS: int64(delay.Mean)}
		for _, c := range vectorInputs() {
			vf.Cases = append(vf.Cases, makeVectorCase(t, f, c, delay))
		}
		return vf
	}, &vf)
	if vf.MaxHops != f.Geometry().MaxHops || vf.PayloadSize != f.Geometry().PayloadSize {
		t.Fatalf("vectors are for %d hops / %d B payloads", vf.MaxHops, vf.PayloadSize)
	}
	if len(vf.Cases) < 4 {
		t.Fatalf("only %d vector cases", len(vf.Cases))
	}
	for _, want := range vf.Cases {
		t.Run(want.Name, func(t *testing.T) {
			for _, h := range want.Hops {
				priv := PrivateKey(h.PrivateKey)
				if pub := priv.Public(); !bytes.Equal(pub[:], h.PublicKey) {
					t.Fatalf("public key %x, vector says %x", pub, h.PublicKey)
				}
			}
			got := makeVectorCase(t, f, want, DelayPolicy{Mean: time.Duration(vf.DelayMeanNS)})
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			if !bytes.Equal(gb, wb) {
				mustEqual(t, "packet", got.Packet, want.Packet)
				mustEqual(t, "SURB", got.SURB, want.SURB)
				for i := range want.Steps {
					mustEqual(t, "step output", got.Steps[i].Output, want.Steps[i].Output)
				}
				t.Fatalf("case differs from the vector:\n got %s\nwant %s", gb, wb)
			}
		})
	}
}

// vectorHopStream derives, as docs/sphinx.md specifies and without the
// package's code, a hop's shared secret with α, its prk and its 264-byte key
// stream (header key, MAC key, K1–K4, blinding scalar, replay tag, delay
// word).
func vectorHopStream(t *testing.T, priv, alpha []byte) (s []byte, prk [32]byte, stream []byte) {
	t.Helper()
	s, err := curve25519.X25519(priv, alpha)
	if err != nil {
		t.Fatal(err)
	}
	prk = sha256.Sum256(append([]byte("strata-sphinx-v1 hop key"), s...))
	stream = make([]byte, 264)
	ciph, err := chacha20.NewUnauthenticatedCipher(prk[:], make([]byte, chacha20.NonceSize))
	if err != nil {
		t.Fatal(err)
	}
	ciph.XORKeyStream(stream, stream)
	return s, prk, stream
}

// TestVectorReplayTags checks every step's replay tag against the tag
// re-derived from the hop's private key and the α the vector shows arriving
// there, without the package's key schedule.
func TestVectorReplayTags(t *testing.T) {
	var vf vectorFile
	testvec.Load(t, vectorsPath, false, nil, &vf)
	for _, c := range vf.Cases {
		for i, h := range c.Hops {
			in := []byte(c.Packet)
			if i > 0 {
				in = c.Steps[i-1].Output
			}
			_, _, stream := vectorHopStream(t, h.PrivateKey, in[:32])
			if !bytes.Equal(stream[224:256], c.Steps[i].ReplayTag) {
				t.Errorf("%s: hop %d: replay tag %x, re-derived %x", c.Name, i, []byte(c.Steps[i].ReplayTag), stream[224:256])
			}
		}
	}
}

// TestVectorReplyKeys checks the reply keys of every SURB vector against
// docs/sphinx.md without the package's key schedule: it re-derives each hop's
// Lioness keys from the hop's private key and the α the vector shows
// arriving there (X25519 from x/crypto/curve25519, the KDF with crypto/sha256
// and x/crypto/chacha20), reads the record at the documented offsets, and
// checks that it holds no byte of any hop's prk, header key, MAC key,
// blinding scalar or replay tag, and that it opens the delivered payload to
// the message.
func TestVectorReplyKeys(t *testing.T) {
	f := testFormat(t)
	var vf vectorFile
	testvec.Load(t, vectorsPath, false, nil, &vf)
	n := 0
	for _, c := range vf.Cases {
		if c.Kind != "surb" {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			hops := len(c.Hops)
			rk := []byte(c.ReplyKeys)
			if want := 1 + 16 + 1 + 32 + hops*128; len(rk) != want {
				t.Fatalf("reply keys of %d bytes, want %d", len(rk), want)
			}
			last := c.Steps[hops-1].Command // DeliverClient: kind ‖ token ‖ SURB id
			switch {
			case rk[0] != 2:
				t.Fatalf("format byte %d, want 2", rk[0])
			case !bytes.Equal(rk[1:17], last[17:33]):
				t.Fatalf("SURB id %x, the last hop's command names %x", rk[1:17], last[17:33])
			case int(rk[17]) != hops:
				t.Fatalf("hop count %d, want %d", rk[17], hops)
			case !bytes.Equal(rk[18:50], c.SURB[len(c.SURB)-32:]):
				t.Fatal("reply key differs from the SURB's")
			}
			for i, h := range c.Hops {
				in := []byte(c.Packet)
				if i > 0 {
					in = c.Steps[i-1].Output
				}
				s, prk, stream := vectorHopStream(t, h.PrivateKey, in[:32])
				layer := rk[50+128*i : 50+128*(i+1)]
				mustEqual(t, fmt.Sprintf("hop %d Lioness keys", i), layer, stream[64:192])
				for name, secret := range map[string][]byte{"shared secret": s, "prk": prk[:], "header key": stream[0:32],
					"MAC key": stream[32:64], "blinding scalar": stream[192:224], "replay tag": stream[224:256]} {
					for j := 0; j < 32; j += 8 {
						if bytes.Contains(rk, secret[j:j+8]) {
							t.Errorf("hop %d: reply keys hold part of the %s", i, name)
						}
					}
				}
			}
			var keys ReplyKeys
			if err := keys.UnmarshalBinary(rk); err != nil {
				t.Fatal(err)
			}
			got, err := f.OpenReply(&keys, bytes.Clone(c.Steps[hops-1].Output))
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "opened", got, padded(c.Message, f.Geometry().PayloadCapacity()))
			mustEqual(t, "opened", got, c.Opened)
		})
	}
	if n == 0 {
		t.Fatal("no SURB vector")
	}
}
