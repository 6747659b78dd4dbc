package pki

import (
	"context"
	"crypto/ed25519"
	"testing"

	"github.com/strata-mix/strata/sphinx"
)

// BenchmarkProveVRF is a relay's cost per epoch.
func BenchmarkProveVRF(b *testing.B) {
	k := detKey("relay", 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ProveVRF(k, [32]byte{1}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyVRF is the chain's cost per VRF transaction.
func BenchmarkVerifyVRF(b *testing.B) {
	k := detKey("relay", 0)
	v, _ := ProveVRF(k, [32]byte{1})
	pub := pubOf(k)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := VerifyVRF(pub, [32]byte{1}, v.Proof); !ok {
			b.Fatal("no")
		}
	}
}

// BenchmarkDecodeTx is the mempool's first step on every transaction.
func BenchmarkDecodeTx(b *testing.B) {
	raw, _ := SignTx(testChainID, 1, detKey("n", 0), &MixKeys{First: 1, Keys: make([]sphinx.PublicKey, 4)})
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTx(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyAttestation measures the state machine on its most
// frequent transaction (every validator attests every node every epoch),
// on a chain of 1,000 registered nodes; it reports transactions per second
// of one core.
func BenchmarkApplyAttestation(b *testing.B) {
	p := testParams()
	p.PowBits = 0
	p.PowStep, p.MaxPendingPerEpoch = 0, 1000 // 1,000 intentions in one epoch
	c := newChain(b, p, 4)
	c.mustBlock()
	var txs [][]byte
	for i := range 1000 {
		tx, err := NewIntention(context.Background(), testChainID, 0, detKey("bench-node", i), RoleRelay, []string{"/ip4/127.0.0.1/tcp/1"}, 0)
		if err != nil {
			b.Fatal(err)
		}
		txs = append(txs, tx)
	}
	c.mustBlock(txs...)
	att := make([][]byte, 1000)
	for i := range att {
		att[i] = c.sign(c.vals[0], 0, &Attestation{Subject: idOf(detKey("bench-node", i))})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%len(att) == 0 {
			c.m.st.kv.writes = make(map[string][]byte)
		}
		if _, err := c.m.ApplyTx(att[i%len(att)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}

// BenchmarkIntentionWork is the expected cost of the default 20-bit proof
// of work, measured as the cost per hash times 2^20.
func BenchmarkIntentionWork(b *testing.B) {
	k := detKey("n", 0)
	unsigned := encodeUnsigned(0, []byte(k.Public().(ed25519.PublicKey)), &Intention{Role: RoleRelay, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}})
	b.ReportAllocs()
	for b.Loop() {
		powOK(testChainID, unsigned, DefaultPowBits)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)*(1<<DefaultPowBits)/1e9, "s/intention")
}
