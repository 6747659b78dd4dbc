package pki

import (
	"crypto/ed25519"
	"testing"
)

// TestMinorityOfValidatorsCannotKeepADeadRelayListed: four validators of
// equal power; a dead relay (its chain client alive, so it keeps sending
// its VRF) is attested in epoch 1 by one, then by two colluding
// validators (half the power, short of the > 2/3 quorum). Its LastSeen
// stays 0 and it is out of epoch 2's topology; an honest relay attested
// by three is in it. The two colluders attesting it again in epoch 2
// keep it out of epoch 3's topology as well.
func TestMinorityOfValidatorsCannotKeepADeadRelayListed(t *testing.T) {
	p := testParams()
	c := newChain(t, p, 4)
	c.mustBlock()
	relays := keysOf("collude-relay", 4)
	c.join(relays, nil)
	dead, honest := relays[3], relays[:3]
	c.until(c.epoch().FreezeHeight(p))
	assertListed(t, c.topology(1), relays, nil)

	c.until(c.epoch().NextStart(p)) // epoch 1
	e := c.epoch().Epoch
	var txs [][]byte
	for _, k := range honest {
		for _, v := range c.vals[1:] { // three of four: a quorum
			txs = append(txs, c.sign(v, e, &Attestation{Subject: idOf(k)}))
		}
	}
	for _, k := range relays {
		txs = append(txs, c.vrfTx(k))
	}
	txs = append(txs, c.sign(c.vals[0], e, &Attestation{Subject: idOf(dead)}))
	c.mustBlock(txs...)
	c.mustBlock(c.sign(c.vals[1], e, &Attestation{Subject: idOf(dead)}))
	if n := c.node(idOf(dead)); n == nil || n.LastSeen != 0 {
		t.Fatalf("two of four validators moved the dead relay's LastSeen: %+v", n)
	}
	c.until(c.epoch().FreezeHeight(p))
	assertListed(t, c.topology(2), honest, []ed25519.PrivateKey{dead})

	c.until(c.epoch().NextStart(p)) // epoch 2: the colluders alone again
	e = c.epoch().Epoch
	txs = nil
	for _, k := range honest {
		txs = append(txs, c.attestAll(idOf(k))...)
	}
	for _, k := range relays {
		txs = append(txs, c.vrfTx(k))
	}
	txs = append(txs, c.sign(c.vals[0], e, &Attestation{Subject: idOf(dead)}), c.sign(c.vals[1], e, &Attestation{Subject: idOf(dead)}))
	c.mustBlock(txs...)
	c.until(c.epoch().FreezeHeight(p))
	assertListed(t, c.topology(3), honest, []ed25519.PrivateKey{dead})
}
