package pki

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/strata-mix/strata/sphinx"
)

func sampleBodies() []Body {
	return []Body{
		&Intention{Role: RoleMailbox, Nonce: 42, Addrs: []string{"/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"}},
		&Attestation{Subject: sphinx.NodeID{1, 2, 3}},
		&MixKeys{First: 7, Keys: []sphinx.PublicKey{{1}, {2}, {3}}},
		&VRFSubmission{Beacon: [32]byte{5}, Proof: [VRFProofSize]byte{6}},
		&Leave{},
	}
}

func TestTxRoundTrip(t *testing.T) {
	key := detKey("node", 1)
	for _, body := range sampleBodies() {
		t.Run(body.Type().String(), func(t *testing.T) {
			raw, err := SignTx(testChainID, 3, key, body)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := DecodeTx(raw)
			if err != nil {
				t.Fatal(err)
			}
			if tx.Epoch != 3 || tx.Signer != pubOf(key) || tx.SignerID() != idOf(key) {
				t.Fatalf("header decoded as epoch %d signer %x", tx.Epoch, tx.Signer[:4])
			}
			if !reflect.DeepEqual(tx.Body, body) {
				t.Fatalf("body decoded as %+v, want %+v", tx.Body, body)
			}
			if err := tx.VerifySignature(testChainID); err != nil {
				t.Fatal(err)
			}
			if err := tx.VerifySignature("another"); CodeOf(err) != CodeBadSignature {
				t.Fatalf("signature valid on another chain: %v", err)
			}
		})
	}
}

func TestDecodeTxRefusesNonCanonicalInput(t *testing.T) {
	key := detKey("node", 1)
	good, _ := SignTx(testChainID, 3, key, &MixKeys{First: 1, Keys: []sphinx.PublicKey{{1}}})
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":         nil,
		"short":         good[:50],
		"version 2":     mutate(func(b []byte) []byte { b[0] = 2; return b }),
		"unknown type":  mutate(func(b []byte) []byte { b[1] = 99; return b }),
		"zero keys":     mutate(func(b []byte) []byte { b[txHeaderSize+8] = 0; return b }),
		"trailing byte": append(append(bytes.Clone(good[:len(good)-64]), 0), good[len(good)-64:]...),
		"too large":     make([]byte, MaxTxSize+1),
	}
	for name, raw := range cases {
		if _, err := DecodeTx(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestSignTxRefusesWhatTheDecoderWould(t *testing.T) {
	key := detKey("node", 1)
	long := string(bytes.Repeat([]byte("a"), maxAddrLen+1))
	for name, body := range map[string]Body{
		"no address":    &Intention{Role: RoleRelay},
		"long address":  &Intention{Role: RoleRelay, Addrs: []string{long}},
		"no keys":       &MixKeys{First: 1},
		"too many keys": &MixKeys{First: 1, Keys: make([]sphinx.PublicKey, maxKeysPerTx+1)},
	} {
		if _, err := SignTx(testChainID, 0, key, body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestProofOfWorkHasTheRequestedBits(t *testing.T) {
	key := detKey("node", 2)
	raw, err := NewIntention(context.Background(), testChainID, 0, key, RoleRelay, []string{"/ip4/127.0.0.1/tcp/1"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := DecodeTx(raw)
	if err != nil {
		t.Fatal(err)
	}
	if h := powHash(testChainID, tx.unsigned); leadingZeros(h) < 10 {
		t.Fatalf("%d zero bits", leadingZeros(h))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewIntention(ctx, testChainID, 0, key, RoleRelay, []string{"/ip4/127.0.0.1/tcp/1"}, 40); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled work: %v", err)
	}
}

func TestVRFVerifiesOnlyItsKeyAndBeacon(t *testing.T) {
	a, b := detKey("relay", 1), detKey("relay", 2)
	v, err := ProveVRF(a, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	out, ok := VerifyVRF(pubOf(a), [32]byte{1}, v.Proof)
	if !ok {
		t.Fatal("valid proof refused")
	}
	again, _ := ProveVRF(a, [32]byte{1})
	if out2, _ := VerifyVRF(pubOf(a), [32]byte{1}, again.Proof); out2 != out {
		t.Fatal("VRF output not unique")
	}
	if _, ok := VerifyVRF(pubOf(b), [32]byte{1}, v.Proof); ok {
		t.Fatal("proof verifies under another key")
	}
	if _, ok := VerifyVRF(pubOf(a), [32]byte{2}, v.Proof); ok {
		t.Fatal("proof verifies on another beacon")
	}
}

func FuzzDecodeTx(f *testing.F) {
	key := detKey("node", 1)
	for _, body := range sampleBodies() {
		raw, _ := SignTx(testChainID, 1, key, body)
		f.Add(raw)
	}
	f.Add([]byte{1, 1})
	f.Fuzz(func(t *testing.T, raw []byte) {
		tx, err := DecodeTx(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes: one encoding per
		// transaction.
		re := append(encodeUnsigned(tx.Epoch, tx.Signer[:], tx.Body), tx.Sig[:]...)
		if !bytes.Equal(re, raw) {
			t.Fatalf("re-encoding differs:\n%x\n%x", raw, re)
		}
		_ = tx.VerifySignature(testChainID)
	})
}

// FuzzApplyTx feeds arbitrary bytes to a state machine that holds relays,
// so decoded transactions reach the state rules.
func FuzzApplyTx(f *testing.F) {
	key := detKey("relay", 0)
	for _, body := range sampleBodies() {
		raw, _ := SignTx(testChainID, 0, key, body)
		f.Add(raw)
	}
	c := newChain(f, testParams(), 1)
	c.mustBlock()
	c.join(keysOf("relay", 3), nil)
	for _, k := range []sphinx.PublicKey{{1}, mixKeyOf(key, 9)} { // small order; valid, unpublished
		raw, _ := SignTx(testChainID, 0, key, &MixKeys{First: 4, Keys: []sphinx.PublicKey{k}})
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s := newKV(c.kv.base)
		m, err := newMachine(s)
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.ApplyTx(raw)
		if err != nil && len(s.writes) != 0 {
			t.Fatalf("refused transaction (%v) wrote %d keys", err, len(s.writes))
		}
		if err != nil && CodeOf(err) == CodeInternal {
			t.Fatalf("internal error: %v", err)
		}
	})
}
