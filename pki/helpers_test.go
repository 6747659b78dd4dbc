package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/strata-mix/strata/sphinx"
)

const testChainID = "strata-test"

// testParams are small parameters for unit tests: 10-block epochs whose
// next topology freezes 3 blocks before the end, and cheap work.
func testParams() Params {
	p := DefaultParams()
	p.EpochBlocks = 10
	p.TopologyLead = 3
	p.PowBits = 4
	p.PublicAddrsOnly = false
	return p
}

// detKey returns an Ed25519 key drawn from a fixed seed, so failures
// reproduce.
func detKey(tag string, i int) ed25519.PrivateKey {
	seed := sha256.Sum256(binary.BigEndian.AppendUint64([]byte(tag), uint64(i)))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubOf(k ed25519.PrivateKey) [32]byte { return [32]byte(k.Public().(ed25519.PublicKey)) }

func idOf(k ed25519.PrivateKey) sphinx.NodeID { return sha256.Sum256(k.Public().(ed25519.PublicKey)) }

// chain drives a Machine block by block, as FinalizeBlock and Commit do,
// without a node.
type chain struct {
	t      testing.TB
	kv     *kv
	m      *Machine
	height int64
	vals   []ed25519.PrivateKey
}

func newChain(t testing.TB, p Params, nvals int) *chain {
	t.Helper()
	c := &chain{t: t, kv: newKV(map[string][]byte{})}
	var vals []Validator
	for i := range nvals {
		k := detKey("validator", i)
		c.vals = append(c.vals, k)
		vals = append(vals, Validator{PubKey: pubOf(k), Power: 10})
	}
	if err := initState(c.kv, testChainID, p, vals); err != nil {
		t.Fatal(err)
	}
	c.kv.apply()
	m, err := newMachine(c.kv)
	if err != nil {
		t.Fatal(err)
	}
	c.m = m
	return c
}

func blockHash(h int64) [32]byte {
	return sha256.Sum256(binary.BigEndian.AppendUint64([]byte("block"), uint64(h)))
}

// block finalizes and commits the next block with txs and returns each
// transaction's result.
func (c *chain) block(txs ...[]byte) []error {
	c.t.Helper()
	c.height++
	if err := c.m.BeginBlock(c.height, blockHash(c.height)); err != nil {
		c.t.Fatal(err)
	}
	errs := make([]error, len(txs))
	for i, tx := range txs {
		_, errs[i] = c.m.ApplyTx(tx)
	}
	if err := c.m.EndBlock(c.height); err != nil {
		c.t.Fatal(err)
	}
	c.kv.apply()
	return errs
}

// mustBlock is block, failing the test on any refused transaction.
func (c *chain) mustBlock(txs ...[]byte) {
	c.t.Helper()
	for i, err := range c.block(txs...) {
		if err != nil {
			c.t.Fatalf("block %d tx %d: %v", c.height, i, err)
		}
	}
}

// until commits empty blocks up to and including height h.
func (c *chain) until(h int64) {
	c.t.Helper()
	for c.height < h {
		c.mustBlock()
	}
}

func (c *chain) epoch() EpochInfo {
	c.t.Helper()
	ei, err := c.m.st.epoch()
	if err != nil {
		c.t.Fatal(err)
	}
	return ei
}

func (c *chain) node(id sphinx.NodeID) *Registration {
	c.t.Helper()
	n, err := c.m.st.node(id)
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func (c *chain) topology(epoch uint64) *Topology {
	c.t.Helper()
	b, ok := c.m.st.topology(epoch)
	if !ok {
		c.t.Fatalf("no topology for epoch %d at height %d", epoch, c.height)
	}
	t, err := DecodeTopology(b)
	if err != nil {
		c.t.Fatal(err)
	}
	return t
}

func (c *chain) sign(key ed25519.PrivateKey, epoch uint64, body Body) []byte {
	c.t.Helper()
	tx, err := SignTx(testChainID, epoch, key, body)
	if err != nil {
		c.t.Fatal(err)
	}
	return tx
}

func (c *chain) intention(key ed25519.PrivateKey, role Role) []byte {
	c.t.Helper()
	tx, err := NewIntention(context.Background(), testChainID, c.epoch().Epoch, key, role, []string{"/ip4/127.0.0.1/tcp/4001"}, c.m.params.PowBits)
	if err != nil {
		c.t.Fatal(err)
	}
	return tx
}

// attestAll has every validator attest subject in the current epoch.
func (c *chain) attestAll(subject sphinx.NodeID) [][]byte {
	var txs [][]byte
	for _, v := range c.vals {
		txs = append(txs, c.sign(v, c.epoch().Epoch, &Attestation{Subject: subject}))
	}
	return txs
}

func mixKeyOf(key ed25519.PrivateKey, epoch uint64) sphinx.PublicKey {
	return sha256.Sum256(append(key.Seed(), byte(epoch)))
}

// keys publishes key's mix keys for epochs first..first+n-1.
func (c *chain) keys(key ed25519.PrivateKey, first uint64, n int) []byte {
	mk := &MixKeys{First: first}
	for i := range n {
		mk.Keys = append(mk.Keys, mixKeyOf(key, first+uint64(i)))
	}
	return c.sign(key, c.epoch().Epoch, mk)
}

func (c *chain) vrfTx(key ed25519.PrivateKey) []byte {
	c.t.Helper()
	ei := c.epoch()
	v, err := ProveVRF(key, ei.Beacon)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.sign(key, ei.Epoch, v)
}

// join registers, admits and keys n relays (and m mailboxes) in the
// current epoch, and submits the relays' VRFs.
func (c *chain) join(relays, mailboxes []ed25519.PrivateKey) {
	c.t.Helper()
	var txs [][]byte
	for _, k := range relays {
		txs = append(txs, c.intention(k, RoleRelay))
	}
	for _, k := range mailboxes {
		txs = append(txs, c.intention(k, RoleMailbox))
	}
	c.mustBlock(txs...)
	txs = nil
	lo := c.epoch().Epoch
	if lo > 0 {
		lo++
	}
	for _, k := range append(append([]ed25519.PrivateKey{}, relays...), mailboxes...) {
		txs = append(txs, c.attestAll(idOf(k))...)
		txs = append(txs, c.keys(k, lo, int(c.m.params.KeysAhead)))
	}
	c.mustBlock(txs...)
	txs = nil
	for _, k := range relays {
		txs = append(txs, c.vrfTx(k))
	}
	c.mustBlock(txs...)
}

func keysOf(tag string, n int) []ed25519.PrivateKey {
	out := make([]ed25519.PrivateKey, n)
	for i := range out {
		out[i] = detKey(tag, i)
	}
	return out
}
