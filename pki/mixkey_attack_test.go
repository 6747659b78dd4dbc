package pki

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/strata-mix/strata/sphinx"
)

// lowOrderMixKeys are every 32-byte encoding of an X25519 point of order
// dividing 8: the canonical u = 0, 1, the two order-8 points and p − 1,
// the non-canonical p and p + 1, and all of them with bit 255 set. With
// any of them as a hop's key, NewPacket cannot form a shared secret.
func lowOrderMixKeys(t testing.TB) []sphinx.PublicKey {
	var out []sphinx.PublicKey
	for _, s := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		raw, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		k := sphinx.PublicKey(raw)
		out = append(out, k)
		k[31] |= 0x80
		out = append(out, k)
	}
	return out
}

// mixKeyAttack runs an epoch in which nine honest relays join and a
// tenth, fully admitted with a VRF output, publishes only low-order mix
// keys. It returns the codes of the attacker's key transactions and the
// topology of epoch 1.
func mixKeyAttack(t *testing.T, attacker ed25519.PrivateKey, honest []ed25519.PrivateKey) ([]Code, *Topology) {
	p := testParams()
	c := newChain(t, p, 1)
	c.mustBlock()
	c.mustBlock(c.intention(attacker, RoleRelay))
	c.join(honest, nil)
	c.mustBlock(c.attestAll(idOf(attacker))...)
	c.mustBlock(c.vrfTx(attacker))
	if n := c.node(idOf(attacker)); n.Status != StatusAdmitted {
		t.Fatalf("attacker is %v, want admitted", n.Status)
	}
	var txs [][]byte
	for _, k := range lowOrderMixKeys(t) {
		txs = append(txs, c.sign(attacker, 0, &MixKeys{First: 1, Keys: []sphinx.PublicKey{k}}))
	}
	// A good key beside a bad one does not slip in: the whole
	// transaction is refused.
	txs = append(txs, c.sign(attacker, 0, &MixKeys{First: 1, Keys: []sphinx.PublicKey{mixKeyOf(attacker, 1), {1}}}))
	var codes []Code
	for _, err := range c.block(txs...) {
		codes = append(codes, CodeOf(err))
	}
	for e := range uint64(4) {
		if k, ok := c.m.st.mixKey(idOf(attacker), e); ok {
			t.Fatalf("attacker holds mix key %v for epoch %d", k, e)
		}
	}
	c.until(c.epoch().FreezeHeight(p))
	return codes, c.topology(1)
}

// TestSmallOrderMixKeysAreRefusedOnChain is the attack of issue 16 item 4:
// a relay that publishes a small-order mix key would make every client
// path through it fail in NewPacket. The chain refuses each such key with
// CodeBadKey, the same way on every run, and the relay never appears in a
// topology, while the honest relays' topology is whole.
func TestSmallOrderMixKeysAreRefusedOnChain(t *testing.T) {
	attacker, honest := detKey("attacker", 0), keysOf("relay", 9)
	codes, top := mixKeyAttack(t, attacker, honest)
	if len(codes) != len(lowOrderMixKeys(t))+1 {
		t.Fatalf("%d results", len(codes))
	}
	for i, c := range codes {
		if c != CodeBadKey {
			t.Errorf("key transaction %d: %v, want %v", i, c, CodeBadKey)
		}
	}
	if _, ok := top.Relay(idOf(attacker)); ok {
		t.Fatal("relay without a usable mix key is in the topology")
	}
	assertStrata(t, top, honest, 1)
	codes2, top2 := mixKeyAttack(t, attacker, honest)
	if top2.Hash() != top.Hash() || len(codes2) != len(codes) {
		t.Fatal("the refusal is not deterministic")
	}
}

// TestDecodeTopologyRefusesSmallOrderMixKeys: a topology document naming
// a small-order mix key for any relay or mailbox — which no chain
// following these rules can produce — is refused whole, so no client or
// relay ever builds a path through such a relay (client.path and
// relay views take their keys only from decoded documents); the honest
// document still decodes.
func TestDecodeTopologyRefusesSmallOrderMixKeys(t *testing.T) {
	top := sampleTopology(t)
	if _, err := DecodeTopology(top.Encode()); err != nil {
		t.Fatal(err)
	}
	for _, k := range lowOrderMixKeys(t) {
		bad := *top
		bad.Relays = append([]Relay(nil), top.Relays...)
		bad.Relays[4].MixKey = k
		if _, err := DecodeTopology(bad.Encode()); !errors.Is(err, ErrMalformed) || !errors.Is(err, sphinx.ErrGroupElement) {
			t.Errorf("relay key %v: %v, want ErrMalformed wrapping a small-order error", k, err)
		}
		bad = *top
		bad.Mailboxes = append([]NodeInfo(nil), top.Mailboxes...)
		bad.Mailboxes[1].MixKey = k
		if _, err := DecodeTopology(bad.Encode()); !errors.Is(err, ErrMalformed) {
			t.Errorf("mailbox key %v: %v, want ErrMalformed", k, err)
		}
	}
}
