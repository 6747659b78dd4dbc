package pki

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
)

func TestPowBitsForFormulaAndCap(t *testing.T) {
	p := DefaultParams() // 20 bits, a bit more every 16
	for _, c := range []struct{ accepted, want uint32 }{
		{0, 20}, {15, 20}, {16, 21}, {31, 21}, {32, 22}, {255, 35}, {256, 36},
		{16 * 20, 40}, {16 * 21, 40}, {math.MaxUint32, 40},
	} {
		if got := p.PowBitsFor(c.accepted); got != c.want {
			t.Errorf("PowBitsFor(%d) = %d, want %d", c.accepted, got, c.want)
		}
	}
	p.PowStep = 0
	for _, n := range []uint32{0, 1, 1000, math.MaxUint32} {
		if got := p.PowBitsFor(n); got != p.PowBits {
			t.Errorf("PowStep 0: PowBitsFor(%d) = %d, want the fixed %d", n, got, p.PowBits)
		}
	}
	p.PowBits, p.PowStep = 40, 1
	if got := p.PowBitsFor(5); got != MaxPowBits {
		t.Errorf("PowBits 40: PowBitsFor(5) = %d, want the cap %d", got, MaxPowBits)
	}
}

// exactIntention signs an intention of key for epoch whose proof of work
// has exactly bits leading zero bits, no more.
func exactIntention(t testing.TB, chainID string, epoch uint64, key ed25519.PrivateKey, addrs []string, bits uint32) []byte {
	t.Helper()
	in := &Intention{Role: RoleRelay, Addrs: addrs}
	unsigned := encodeUnsigned(epoch, key.Public().(ed25519.PublicKey), in)
	for nonce := uint64(0); ; nonce++ {
		binary.BigEndian.PutUint64(unsigned[nonceOffset:], nonce)
		if leadingZeros(powHash(chainID, unsigned)) == int(bits) {
			in.Nonce = nonce
			tx, err := SignTx(chainID, epoch, key, in)
			if err != nil {
				t.Fatal(err)
			}
			return tx
		}
	}
}

// TestAdmissionPriceClimbsAndTheEpochFills drives the state machine: in
// each epoch the k-th intention (k from 0) needs exactly PowBitsFor(k)
// bits (one bit less is refused as insufficient work), intentions beyond
// MaxPendingPerEpoch are refused with CodePendingFull however much work
// they carry, the refusals change nothing, and the next epoch starts
// again at PowBits. QueryAdmission's state (admissionOf) follows.
func TestAdmissionPriceClimbsAndTheEpochFills(t *testing.T) {
	p := testParams()
	p.PowBits, p.PowStep, p.MaxPendingPerEpoch = 3, 2, 7
	p.EpochBlocks = 20
	c := newChain(t, p, 1)
	c.mustBlock()
	addrs := []string{"/ip4/127.0.0.1/tcp/1"}
	for epoch := uint64(0); epoch < 2; epoch++ {
		for k := uint32(0); k < p.MaxPendingPerEpoch; k++ {
			key := detKey(fmt.Sprint("climb-", epoch), int(k))
			want := p.PowBitsFor(k)
			if want != p.PowBits+k/2 {
				t.Fatalf("PowBitsFor(%d) = %d", k, want)
			}
			adm, err := admissionOf(c.m.st)
			if err != nil || adm != (Admission{Epoch: epoch, Accepted: k, MaxPending: 7, PowBits: want}) {
				t.Fatalf("admission %+v, %v; want epoch %d, %d accepted, %d bits", adm, err, epoch, k, want)
			}
			errs := c.block(exactIntention(t, testChainID, epoch, key, addrs, want-1), exactIntention(t, testChainID, epoch, key, addrs, want))
			if CodeOf(errs[0]) != CodeInsufficientWork {
				t.Fatalf("epoch %d intention %d with %d bits: %v, want insufficient work", epoch, k, want-1, errs[0])
			}
			if errs[1] != nil {
				t.Fatalf("epoch %d intention %d with %d bits: %v", epoch, k, want, errs[1])
			}
			if n := c.node(idOf(key)); n == nil || n.Status != StatusPending {
				t.Fatalf("intention %d with %d bits not registered", k, want)
			}
		}
		late := detKey(fmt.Sprint("late-", epoch), 0)
		tx, err := NewIntention(context.Background(), testChainID, epoch, late, RoleRelay, addrs, p.PowBitsFor(p.MaxPendingPerEpoch)+4)
		if err != nil {
			t.Fatal(err)
		}
		if errs := c.block(tx); CodeOf(errs[0]) != CodePendingFull {
			t.Fatalf("intention beyond the cap: %v, want %v", errs[0], CodePendingFull)
		}
		if adm, _ := admissionOf(c.m.st); !adm.Full() || adm.Accepted != p.MaxPendingPerEpoch {
			t.Fatalf("full epoch: admission %+v", adm)
		}
		c.until(c.epoch().NextStart(p))
	}
	// PowStep 0: the price stays at PowBits.
	p.PowStep = 0
	c = newChain(t, p, 1)
	c.mustBlock()
	for k := range int(p.MaxPendingPerEpoch) {
		c.mustBlock(exactIntention(t, testChainID, 0, detKey("fixed", k), addrs, p.PowBits))
	}
}

// TestPublicAddrsOnlyRefusesInternalAddresses: with PublicAddrsOnly the
// chain refuses intentions naming loopback, private, shared, link-local,
// unspecified or multicast IPs and local DNS names (CodeBadAddress), one
// bad address among good ones included; public IPs and names pass. Off
// (testnets), loopback is accepted.
func TestPublicAddrsOnlyRefusesInternalAddresses(t *testing.T) {
	p := testParams()
	p.PublicAddrsOnly = true
	c := newChain(t, p, 1)
	c.mustBlock()
	i := 0
	intention := func(addrs ...string) []byte {
		i++
		tx, err := NewIntention(context.Background(), testChainID, 0, detKey("public", i), RoleRelay, addrs, c.m.params.PowBitsFor(c.m.st.accepted(0)))
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	for _, a := range [][]string{
		{"/ip4/127.0.0.1/tcp/4001"},
		{"/ip4/10.0.0.7/tcp/4001"},
		{"/ip4/192.168.1.20/udp/4001/quic-v1"},
		{"/ip4/100.64.3.4/tcp/4001"},
		{"/ip4/169.254.169.254/tcp/80"},
		{"/ip4/0.0.0.0/tcp/4001"},
		{"/ip6/::1/tcp/4001"},
		{"/ip6/fe80::1/tcp/4001"},
		{"/ip6/fd12:3456::1/tcp/4001"},
		{"/ip6/::ffff:10.1.1.1/tcp/4001"},
		{"/dns4/localhost/tcp/4001"},
		{"/dns/printer.local/tcp/4001"},
		{"/ip4/203.0.113.7/tcp/4001", "/ip4/192.168.0.1/tcp/4001"},
	} {
		if errs := c.block(intention(a...)); CodeOf(errs[0]) != CodeBadAddress {
			t.Errorf("%v: %v, want bad address", a, errs[0])
		}
	}
	if got := c.m.st.accepted(0); got != 0 {
		t.Fatalf("refused intentions counted: %d", got)
	}
	for _, a := range []string{"/ip4/203.0.113.7/tcp/4001", "/ip6/2001:db8::7/udp/4001/quic-v1", "/dns4/relay.example.org/tcp/4001"} {
		c.mustBlock(intention(a))
	}
	p.PublicAddrsOnly = false
	c = newChain(t, p, 1)
	c.mustBlock()
	c.mustBlock(intention("/ip4/127.0.0.1/tcp/4001"))
}

// TestAdmissionQuery reads QueryAdmission through the ABCI application:
// the price follows the committed count, and a CheckTx-only intention
// does not change the answer until it is in a block.
func TestAdmissionQuery(t *testing.T) {
	c := newAppChain(t)
	c.block()
	p := testParams()
	read := func() Admission {
		res := c.query(QueryAdmission, false)
		if res.Code != 0 {
			t.Fatalf("query: code %d %s", res.Code, res.Log)
		}
		adm, err := DecodeAdmission(res.Value)
		if err != nil {
			t.Fatal(err)
		}
		return adm
	}
	if adm := read(); adm != (Admission{Epoch: 0, Accepted: 0, MaxPending: p.MaxPendingPerEpoch, PowBits: p.PowBits}) {
		t.Fatalf("empty chain: %+v", adm)
	}
	var txs [][]byte
	for i := range int(p.PowStep) + 1 {
		tx, err := NewIntention(context.Background(), testChainID, 0, detKey("query", i), RoleRelay, []string{"/ip4/127.0.0.1/tcp/1"}, p.PowBitsFor(uint32(i)))
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	if code := c.checkTx(txs[0]); code != CodeOK {
		t.Fatalf("check: %v", code)
	}
	if adm := read(); adm.Accepted != 0 {
		t.Fatalf("a mempool intention counted: %+v", adm)
	}
	res, _ := c.block(txs...)
	for i, r := range res {
		if r.Code != 0 {
			t.Fatalf("intention %d: %s", i, r.Log)
		}
	}
	if adm := read(); adm.Accepted != p.PowStep+1 || adm.PowBits != p.PowBits+1 {
		t.Fatalf("after %d intentions: %+v, want %d bits", p.PowStep+1, adm, p.PowBits+1)
	}
	if _, err := DecodeAdmission([]byte(`{"pow_bits": 41}`)); err == nil {
		t.Fatal("an admission over MaxPowBits decoded")
	}
	if _, err := DecodeAdmission([]byte(`{`)); err == nil {
		t.Fatal("broken JSON decoded")
	}
}

// BenchmarkFillEpoch reports, from the measured SHA-256 rate, what the
// default parameters make an attacker pay to fill one epoch's admission
// (MaxPendingPerEpoch intentions at the climbing price), and the price
// of the last one, in seconds of one core.
func BenchmarkFillEpoch(b *testing.B) {
	k := detKey("n", 0)
	unsigned := encodeUnsigned(0, []byte(k.Public().(ed25519.PublicKey)), &Intention{Role: RoleRelay, Addrs: []string{"/ip4/203.0.113.7/tcp/4001"}})
	for b.Loop() {
		powOK(testChainID, unsigned, DefaultPowBits)
	}
	perHash := b.Elapsed().Seconds() / float64(b.N)
	p := DefaultParams()
	var hashes float64
	for i := range p.MaxPendingPerEpoch {
		hashes += math.Ldexp(1, int(p.PowBitsFor(i)))
	}
	b.ReportMetric(1/perHash/1e6, "Mhash/s")
	b.ReportMetric(hashes*perHash, "core-s/epoch")
	b.ReportMetric(math.Ldexp(1, int(p.PowBitsFor(p.MaxPendingPerEpoch-1)))*perHash, "core-s/last")
	b.ReportMetric(math.Ldexp(1, int(p.PowBits))*perHash, "core-s/first")
}
