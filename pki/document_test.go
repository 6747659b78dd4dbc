package pki

import (
	"bytes"
	"errors"
	"testing"
)

func sampleTopology(t testing.TB) *Topology {
	c := newChain(t, testParams(), 1)
	c.mustBlock()
	c.join(keysOf("relay", 10), keysOf("mailbox", 2))
	return c.topology(0)
}

func TestTopologyRoundTrip(t *testing.T) {
	top := sampleTopology(t)
	raw := top.Encode()
	back, err := DecodeTopology(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Encode(), raw) || back.Hash() != top.Hash() {
		t.Fatal("re-encoding differs")
	}
	if back.ChainID != testChainID || back.Params != testParams() || len(back.Relays) != 10 || len(back.Mailboxes) != 2 {
		t.Fatalf("decoded %q %+v with %d relays, %d mailboxes", back.ChainID, back.Params, len(back.Relays), len(back.Mailboxes))
	}
	for _, r := range back.Relays {
		if _, ok := back.Relay(r.ID); !ok {
			t.Fatal("relay lookup fails")
		}
	}
	if _, ok := back.Mailbox(back.Mailboxes[1].ID); !ok {
		t.Fatal("mailbox lookup fails")
	}
}

func TestDecodeTopologyRefusesInconsistentDocuments(t *testing.T) {
	top := sampleTopology(t)
	swapped := *top
	swapped.Relays = append([]Relay(nil), top.Relays...)
	swapped.Relays[0], swapped.Relays[9] = swapped.Relays[9], swapped.Relays[0]
	wrongLayer := *top
	wrongLayer.Relays = append([]Relay(nil), top.Relays...)
	wrongLayer.Relays[0].Layer = 1
	forgedVRF := *top
	forgedVRF.Relays = append([]Relay(nil), top.Relays...)
	forgedVRF.Relays[0].VRF[0] ^= 0xff
	mailboxes := *top
	mailboxes.Mailboxes = []NodeInfo{top.Mailboxes[1], top.Mailboxes[0]}
	raw := top.Encode()
	for name, b := range map[string][]byte{
		"relays out of order":    swapped.Encode(),
		"relay in wrong layer":   wrongLayer.Encode(),
		"vrf changed":            forgedVRF.Encode(),
		"mailboxes out of order": mailboxes.Encode(),
		"truncated":              raw[:len(raw)-1],
		"trailing":               append(bytes.Clone(raw), 0),
		"not a document":         []byte("hello"),
	} {
		if _, err := DecodeTopology(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeTopology(f *testing.F) {
	f.Add(sampleTopology(f).Encode())
	empty := &Topology{ChainID: "x", Params: testParams()}
	f.Add(empty.Encode())
	f.Fuzz(func(t *testing.T, raw []byte) {
		top, err := DecodeTopology(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decoding error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(top.Encode(), raw) {
			t.Fatal("accepted a non-canonical document")
		}
		if g := top.Graph(); g != nil {
			for _, r := range top.Relays {
				if r.Layer+1 < len(g.Layers) && len(r.Next) == 0 {
					t.Fatal("relay without successors")
				}
			}
		}
	})
}

// BenchmarkDecodeTopology measures a client verifying and linking a
// 3000-relay document.
func BenchmarkDecodeTopology(b *testing.B) {
	c := newChain(b, testParams(), 1)
	c.mustBlock()
	relays := make([]Relay, 3000)
	for i := range relays {
		k := detKey("bench", i)
		v, _ := ProveVRF(k, [32]byte{1})
		out, _ := VerifyVRF(pubOf(k), [32]byte{1}, v.Proof)
		relays[i] = Relay{NodeInfo: NodeInfo{ID: idOf(k), IdentityKey: pubOf(k), Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}, MixKey: mixKeyOf(k, 1)}, VRF: out}
	}
	top, err := buildTopology(testChainID, 1, [32]byte{1}, testParams(), relays, nil)
	if err != nil {
		b.Fatal(err)
	}
	raw := top.Encode()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTopology(raw); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/3000, "ns/relay")
}

func FuzzDecodeEpochInfo(f *testing.F) {
	f.Add(EpochInfo{Epoch: 3, Open: true, Start: 42}.encode())
	f.Fuzz(func(t *testing.T, raw []byte) {
		ei, err := DecodeEpochInfo(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decoding error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(ei.encode(), raw) {
			t.Fatal("accepted a non-canonical epoch answer")
		}
	})
}

func TestDecodeEpochInfoRefusesNonCanonical(t *testing.T) {
	good := EpochInfo{Epoch: 3, Open: true, Start: 42}.encode()
	open := append([]byte(nil), good...)
	open[8] = 2
	start := append([]byte(nil), good...)
	start[9] = 0x80
	for name, b := range map[string][]byte{"open flag 2": open, "start above 2^63": start, "short": good[:20]} {
		if _, err := DecodeEpochInfo(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := DecodeEpochInfo(good); err != nil {
		t.Fatal(err)
	}
}
