package sphinx

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"math/rand/v2"
	"testing"
	"time"
)

// testNode is a node of a test network.
type testNode struct {
	id   NodeID
	priv *PrivateKey
	pub  PublicKey
}

// testRand returns a deterministic randomness source for seed.
func testRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	s[2] = byte(seed >> 16)
	return rand.NewChaCha8(s)
}

func testNodes(t testing.TB, rnd *rand.ChaCha8, n int) []testNode {
	t.Helper()
	nodes := make([]testNode, n)
	for i := range nodes {
		priv, pub, err := GenerateKey(rnd)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i].priv, nodes[i].pub = priv, pub
		rnd.Read(nodes[i].id[:])
	}
	return nodes
}

func pathOf(nodes []testNode) []Hop {
	p := make([]Hop, len(nodes))
	for i, n := range nodes {
		p[i] = Hop{ID: n.id, Key: n.pub}
	}
	return p
}

func testFormat(t testing.TB) *Format {
	t.Helper()
	f, err := NewFormat(DefaultGeometry())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var testDelay = DelayPolicy{Mean: 50 * time.Millisecond}

// walk unwraps pkt at every node of nodes in turn, checking that each
// intermediate hop forwards to the next with the route's delay, and returns
// the final hop's result.
func walk(t *testing.T, f *Format, nodes []testNode, pkt []byte, route Route) Result {
	t.Helper()
	var res Result
	for i, n := range nodes {
		if err := f.Unwrap(n.priv, testDelay, pkt, &res); err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		if i == len(nodes)-1 {
			break
		}
		if res.Command.Kind != Forward || res.Command.NextHop() != nodes[i+1].id {
			t.Fatalf("hop %d: command %v, want forward to %v", i, res.Command, nodes[i+1].id)
		}
		if res.Delay != route.Delays[i] {
			t.Fatalf("hop %d: delay %v, sender predicted %v", i, res.Delay, route.Delays[i])
		}
	}
	if !res.Command.Kind.Final() {
		t.Fatalf("last hop got non-final command %v", res.Command)
	}
	return res
}

func padded(msg []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, msg)
	return out
}

func mustEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n got %x\nwant %x", what, got, want)
	}
}

func newHash() hash.Hash { return sha256.New() }
