package pki

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/strata-mix/strata/internal/testvec"
	"github.com/strata-mix/strata/sphinx"
)

var updateVectors = flag.Bool("update", false, "rewrite testdata/vectors.json (finds the intentions' proofs of work again)")

const vectorsPath = "testdata/vectors.json"

type hexBytes = testvec.Hex

var hb = testvec.Of

// vectorFile is pki/testdata/vectors.json.
type vectorFile struct {
	Comment      string        `json:"comment"`
	Transactions []txVector    `json:"transactions"`
	Topologies   []topoVector  `json:"topology_documents"`
	EpochInfos   []epochVector `json:"epoch_infos"`
}

type txBody struct {
	// Intention.
	Role    Role     `json:"role,omitempty"`
	Nonce   uint64   `json:"nonce,omitempty"`
	Addrs   []string `json:"addrs,omitempty"`
	PowBits uint32   `json:"pow_bits,omitempty"` // not on the wire: Params.PowBits
	PowHash hexBytes `json:"pow_hash,omitempty"` // derived
	// Attestation.
	Subject hexBytes `json:"subject,omitempty"`
	// Mix keys.
	First uint64     `json:"first_epoch,omitempty"`
	Keys  []hexBytes `json:"mix_keys,omitempty"`
	// VRF.
	Beacon    hexBytes `json:"beacon,omitempty"`
	Proof     hexBytes `json:"proof,omitempty"`
	VRFOutput hexBytes `json:"vrf_output,omitempty"` // derived
}

type txVector struct {
	Name     string   `json:"name"`
	ChainID  string   `json:"chain_id"`
	Seed     hexBytes `json:"signer_seed"`
	Type     TxType   `json:"type"`
	TypeName string   `json:"type_name"`
	Epoch    uint64   `json:"epoch"`
	Signer   hexBytes `json:"signer"`
	SignerID hexBytes `json:"signer_id"`
	Body     txBody   `json:"body"`
	// Signed is what the signature covers; BodyHash is SHA-256 of the
	// encoding without the signature (the replay key).
	Signed    hexBytes `json:"signed_message"`
	BodyHash  hexBytes `json:"body_hash"`
	Signature hexBytes `json:"signature"`
	Encoding  hexBytes `json:"encoding"`
}

type vecNode struct {
	ID          hexBytes   `json:"id"` // derived: SHA-256 of the identity key
	IdentityKey hexBytes   `json:"identity_key"`
	MixKey      hexBytes   `json:"mix_key"`
	Addrs       []string   `json:"addrs,omitempty"`
	VRF         hexBytes   `json:"vrf_output,omitempty"` // the sort key: the withheld key when withheld
	Layer       int        `json:"layer"`
	Withheld    bool       `json:"withheld,omitempty"`
	Next        []hexBytes `json:"next,omitempty"` // derived by the decoder
}

type topoVector struct {
	Name      string    `json:"name"`
	ChainID   string    `json:"chain_id"`
	Epoch     uint64    `json:"epoch"`
	Beacon    hexBytes  `json:"beacon"`
	VRFBeacon hexBytes  `json:"vrf_beacon"`
	Params    Params    `json:"params"`
	Relays    []vecNode `json:"relays"`
	Mailboxes []vecNode `json:"mailboxes"`
	Hash      hexBytes  `json:"hash"`
	Encoding  hexBytes  `json:"encoding"`
}

type epochVector struct {
	Name     string   `json:"name"`
	Epoch    uint64   `json:"epoch"`
	Open     bool     `json:"open"`
	Start    int64    `json:"start"`
	Beacon   hexBytes `json:"beacon"`
	Encoding hexBytes `json:"encoding"`
}

const vectorComment = "Strata PKI test vectors (docs/pki.md, \"Transactions\", \"Topology document\", \"Queries\"). " +
	"Byte strings are hex. Transactions are signed with the Ed25519 key of 'signer_seed'; 'signed_message' is what the " +
	"signature covers. An intention's nonce is the first (counting from 0) whose pow_hash has pow_bits leading zero bits " +
	"(the default Params.PowBits); pow_bits, pow_hash, vrf_output, node ids and the relays' 'next' are derived, not on the wire. " +
	"Topology relays' VRF outputs are real ECVRF outputs of their identity keys on the vrf_beacon; a withheld relay's " +
	"vrf_output is its withheld key. VRF proofs are hedged (ProveVRFWith) with bytes from ChaCha8 seeded by SHA-256 of the vector's name."

const vectorChain = "strata-vectors"

func vectorKey(tag string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("strata pki test vector key " + tag))
	return ed25519.NewKeyFromSeed(seed[:])
}

// vectorRand is the randomness of the VRF proof of the vector called name,
// so the hedged proofs of the vectors are reproducible.
func vectorRand(name string) io.Reader {
	return rand.NewChaCha8(sha256.Sum256([]byte(name)))
}

func vectorBeacon(epoch uint64) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "strata test vector beacon %d", epoch))
}

func vectorMixKey(tag string, epoch uint64) sphinx.PublicKey {
	priv := sphinx.PrivateKey(sha256.Sum256(fmt.Appendf(nil, "strata test vector mix key %s %d", tag, epoch)))
	return priv.Public()
}

// txVectorOf describes a decoded transaction; name, chain, seed and pow bits
// are the vector's context.
func txVectorOf(name, chainID string, seed []byte, powBits uint32, tx *Tx, raw []byte) txVector {
	id := tx.SignerID()
	bh := tx.BodyHash()
	v := txVector{Name: name, ChainID: chainID, Seed: hb(seed), Type: tx.Body.Type(), TypeName: tx.Body.Type().String(),
		Epoch: tx.Epoch, Signer: hb(tx.Signer[:]), SignerID: hb(id[:]), Signed: hb(signMessage(chainID, tx.unsigned)),
		BodyHash: hb(bh[:]), Signature: hb(tx.Sig[:]), Encoding: hb(raw)}
	switch b := tx.Body.(type) {
	case *Intention:
		h := powHash(chainID, tx.unsigned)
		v.Body = txBody{Role: b.Role, Nonce: b.Nonce, Addrs: b.Addrs, PowBits: powBits, PowHash: hb(h[:])}
	case *Attestation:
		v.Body = txBody{Subject: hb(b.Subject[:])}
	case *MixKeys:
		v.Body = txBody{First: b.First}
		for _, k := range b.Keys {
			v.Body.Keys = append(v.Body.Keys, hb(k[:]))
		}
	case *VRFSubmission:
		out, _ := VerifyVRF(tx.Signer, b.Beacon, b.Proof)
		v.Body = txBody{Beacon: hb(b.Beacon[:]), Proof: hb(b.Proof[:]), VRFOutput: hb(out[:])}
	}
	return v
}

// body returns the transaction body a vector describes.
func (v txVector) body(t *testing.T) Body {
	switch v.Type {
	case TxIntention:
		return &Intention{Role: v.Body.Role, Nonce: v.Body.Nonce, Addrs: v.Body.Addrs}
	case TxAttest:
		return &Attestation{Subject: sphinx.NodeID(v.Body.Subject)}
	case TxMixKeys:
		mk := &MixKeys{First: v.Body.First}
		for _, k := range v.Body.Keys {
			mk.Keys = append(mk.Keys, sphinx.PublicKey(k))
		}
		return mk
	case TxVRF:
		return &VRFSubmission{Beacon: [32]byte(v.Body.Beacon), Proof: [VRFProofSize]byte(v.Body.Proof)}
	case TxLeave:
		return &Leave{}
	}
	t.Fatalf("unknown transaction type %d", v.Type)
	return nil
}

func nodeVectorOf(n *NodeInfo) vecNode {
	return vecNode{ID: hb(n.ID[:]), IdentityKey: hb(n.IdentityKey[:]), MixKey: hb(n.MixKey[:]), Addrs: n.Addrs}
}

func topoVectorOf(name string, top *Topology, raw []byte) topoVector {
	h := sha256.Sum256(raw)
	v := topoVector{Name: name, ChainID: top.ChainID, Epoch: top.Epoch, Beacon: hb(top.Beacon[:]), VRFBeacon: hb(top.VRFBeacon[:]),
		Params: top.Params, Hash: hb(h[:]), Encoding: hb(raw)}
	for i := range top.Relays {
		r := &top.Relays[i]
		n := nodeVectorOf(&r.NodeInfo)
		n.VRF, n.Layer, n.Withheld = hb(r.VRF[:]), r.Layer, r.Withheld
		for _, id := range r.Next {
			n.Next = append(n.Next, hb(id[:]))
		}
		v.Relays = append(v.Relays, n)
	}
	for i := range top.Mailboxes {
		v.Mailboxes = append(v.Mailboxes, nodeVectorOf(&top.Mailboxes[i]))
	}
	return v
}

func (n vecNode) info() NodeInfo {
	return NodeInfo{ID: sphinx.NodeID(n.ID), IdentityKey: [32]byte(n.IdentityKey), MixKey: sphinx.PublicKey(n.MixKey), Addrs: n.Addrs}
}

// topology returns the document a vector describes, without what the
// decoder derives.
func (v topoVector) topology() *Topology {
	top := &Topology{ChainID: v.ChainID, Epoch: v.Epoch, Params: v.Params}
	// copy, not a conversion: a vector file without the field fails the
	// comparison instead of panicking.
	copy(top.Beacon[:], v.Beacon)
	copy(top.VRFBeacon[:], v.VRFBeacon)
	for _, n := range v.Relays {
		top.Relays = append(top.Relays, Relay{NodeInfo: n.info(), Layer: n.Layer, VRF: [VRFOutputSize]byte(n.VRF), Withheld: n.Withheld})
	}
	for _, n := range v.Mailboxes {
		top.Mailboxes = append(top.Mailboxes, n.info())
	}
	return top
}

// makeVectors builds the published vectors. nonce returns the proof of work
// of an intention vector: found again with -update, read from the
// published file otherwise (the search takes a fraction of a second each).
func makeVectors(t *testing.T, nonce func(name string, epoch uint64, key ed25519.PrivateKey, role Role, addrs []string) uint64) vectorFile {
	t.Helper()
	vf := vectorFile{Comment: vectorComment}
	node, mbox, validator := vectorKey("relay"), vectorKey("mailbox"), vectorKey("validator")
	const epoch = 7
	beacon := vectorBeacon(epoch)
	vrf, err := ProveVRFWith(vectorRand("VRF on the epoch's beacon"), node, beacon)
	if err != nil {
		t.Fatal(err)
	}
	relayAddrs := []string{"/ip4/192.0.2.1/tcp/4001"}
	mboxAddrs := []string{"/ip4/192.0.2.2/tcp/4001", "/ip6/2001:db8::2/udp/4001/quic-v1"}
	for _, in := range []struct {
		name string
		key  ed25519.PrivateKey
		body Body
	}{
		{"intention of a relay", node, &Intention{Role: RoleRelay, Addrs: relayAddrs,
			Nonce: nonce("intention of a relay", epoch, node, RoleRelay, relayAddrs)}},
		{"intention of a mailbox with two addresses", mbox, &Intention{Role: RoleMailbox, Addrs: mboxAddrs,
			Nonce: nonce("intention of a mailbox with two addresses", epoch, mbox, RoleMailbox, mboxAddrs)}},
		{"attestation by a validator", validator, &Attestation{Subject: idOf(node)}},
		{"mix keys for epochs 8 to 10", node, &MixKeys{First: epoch + 1, Keys: []sphinx.PublicKey{
			vectorMixKey("relay", epoch+1), vectorMixKey("relay", epoch+2), vectorMixKey("relay", epoch+3)}}},
		{"VRF on the epoch's beacon", node, vrf},
		{"leave", mbox, &Leave{}},
	} {
		raw, err := SignTx(vectorChain, epoch, in.key, in.body)
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		tx, err := DecodeTx(raw)
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		var powBits uint32
		if in.body.Type() == TxIntention {
			powBits = DefaultPowBits
		}
		vf.Transactions = append(vf.Transactions, txVectorOf(in.name, vectorChain, in.key.Seed(), powBits, tx, raw))
	}

	// A topology document of 5 relays in 3 layers with k = 2, and 2
	// mailboxes; the relays' VRF outputs are on the previous epoch's beacon,
	// except relay 4's, which is withheld.
	p := DefaultParams()
	p.Successors = 2
	var relays []Relay
	for i := range 5 {
		tag := fmt.Sprintf("topology relay %d", i)
		k := vectorKey(tag)
		pr, _ := ProveVRFWith(vectorRand(tag), k, beacon)
		out, ok := VerifyVRF(pubOf(k), beacon, pr.Proof)
		if !ok {
			t.Fatal("VRF proof refused")
		}
		relays = append(relays, Relay{NodeInfo: NodeInfo{ID: idOf(k), IdentityKey: pubOf(k), MixKey: vectorMixKey(tag, epoch+1),
			Addrs: []string{fmt.Sprintf("/ip4/192.0.2.%d/tcp/4001", 10+i)}}, VRF: out, Withheld: i == 4})
	}
	var mailboxes []NodeInfo
	for i := range 2 {
		tag := fmt.Sprintf("topology mailbox %d", i)
		k := vectorKey(tag)
		mailboxes = append(mailboxes, NodeInfo{ID: idOf(k), IdentityKey: pubOf(k), MixKey: vectorMixKey(tag, epoch+1),
			Addrs: []string{fmt.Sprintf("/ip4/192.0.2.%d/tcp/4001", 20+i)}})
	}
	if bytes.Compare(mailboxes[0].ID[:], mailboxes[1].ID[:]) > 0 {
		mailboxes[0], mailboxes[1] = mailboxes[1], mailboxes[0]
	}
	top, err := buildTopology(vectorChain, epoch+1, beacon, p, relays, mailboxes)
	if err != nil {
		t.Fatal(err)
	}
	raw := top.Encode()
	vf.Topologies = append(vf.Topologies, topoVectorOf("epoch 8: 5 relays in 3 layers (one withheld), k = 2, 2 mailboxes", top, raw))

	for _, ei := range []struct {
		name string
		ei   EpochInfo
	}{
		{"epoch 7 open since height 25201", EpochInfo{Epoch: epoch, Open: true, Start: 25201, Beacon: beacon}},
		{"before the first block", EpochInfo{}},
	} {
		vf.EpochInfos = append(vf.EpochInfos, epochVector{Name: ei.name, Epoch: ei.ei.Epoch, Open: ei.ei.Open, Start: ei.ei.Start,
			Beacon: hb(ei.ei.Beacon[:]), Encoding: hb(ei.ei.encode())})
	}
	return vf
}

var jsonOf = testvec.JSON

// TestVectors checks testdata/vectors.json both ways: the fields of every
// vector encode to its bytes, and its bytes decode to its fields.
func TestVectors(t *testing.T) {
	var vf vectorFile
	testvec.Load(t, vectorsPath, *updateVectors, func() any {
		return makeVectors(t, func(name string, epoch uint64, key ed25519.PrivateKey, role Role, addrs []string) uint64 {
			raw, err := NewIntention(context.Background(), vectorChain, epoch, key, role, addrs, DefaultPowBits)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			tx, err := DecodeTx(raw)
			if err != nil {
				t.Fatal(err)
			}
			return tx.Body.(*Intention).Nonce
		})
	}, &vf)
	published := map[string]uint64{}
	for _, v := range vf.Transactions {
		published[v.Name] = v.Body.Nonce
	}
	regenerated := makeVectors(t, func(name string, _ uint64, _ ed25519.PrivateKey, _ Role, _ []string) uint64 { return published[name] })
	if jsonOf(t, vf) != jsonOf(t, regenerated) {
		t.Error("testdata/vectors.json differs from what the code produces (go test ./pki -run TestVectors -update)")
	}

	types := map[TxType]bool{}
	for _, v := range vf.Transactions {
		t.Run("tx/"+v.Name, func(t *testing.T) {
			types[v.Type] = true
			key := ed25519.NewKeyFromSeed(v.Seed)
			if pub := key.Public().(ed25519.PublicKey); !bytes.Equal(pub, v.Signer) {
				t.Fatalf("signer %x, vector says %x", pub, v.Signer)
			}
			b, err := SignTx(v.ChainID, v.Epoch, key, v.body(t))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, v.Encoding) {
				t.Fatalf("encodes to\n%x\nvector says\n%x", b, v.Encoding)
			}
			tx, err := DecodeTx(v.Encoding)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := jsonOf(t, txVectorOf(v.Name, v.ChainID, v.Seed, v.Body.PowBits, tx, v.Encoding)), jsonOf(t, v); got != want {
				t.Fatalf("decodes to\n%s\nvector says\n%s", got, want)
			}
			if err := tx.VerifySignature(v.ChainID); err != nil {
				t.Fatal(err)
			}
			switch b := tx.Body.(type) {
			case *Intention:
				if v.Body.PowBits != DefaultPowBits || !powOK(v.ChainID, tx.unsigned, v.Body.PowBits) {
					t.Fatalf("proof of work of %d bits, want %d", leadingZeros(powHash(v.ChainID, tx.unsigned)), DefaultPowBits)
				}
			case *VRFSubmission:
				again, _ := ProveVRFWith(vectorRand(v.Name), key, b.Beacon)
				if again.Proof != b.Proof {
					t.Fatal("the VRF proof is not the signer's hedged proof on the beacon")
				}
				if _, ok := VerifyVRF(tx.Signer, b.Beacon, b.Proof); !ok {
					t.Fatal("VRF proof refused")
				}
			}
		})
	}
	for typ := TxIntention; typ <= TxLeave; typ++ {
		if !types[typ] {
			t.Errorf("no vector for %v transactions", typ)
		}
	}

	for _, v := range vf.Topologies {
		t.Run("topology/"+v.Name, func(t *testing.T) {
			b := v.topology().Encode()
			if !bytes.Equal(b, v.Encoding) {
				t.Fatalf("encodes to\n%x\nvector says\n%x", b, v.Encoding)
			}
			top, err := DecodeTopology(v.Encoding)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := jsonOf(t, topoVectorOf(v.Name, top, v.Encoding)), jsonOf(t, v); got != want {
				t.Fatalf("decodes to\n%s\nvector says\n%s", got, want)
			}
			if h := top.Hash(); !bytes.Equal(h[:], v.Hash) {
				t.Fatalf("hash %x, vector says %x", h, v.Hash)
			}
		})
	}

	for _, v := range vf.EpochInfos {
		t.Run("epoch/"+v.Name, func(t *testing.T) {
			ei := EpochInfo{Epoch: v.Epoch, Open: v.Open, Start: v.Start, Beacon: [32]byte(v.Beacon)}
			if b := ei.encode(); !bytes.Equal(b, v.Encoding) {
				t.Fatalf("encodes to %x, vector says %x", b, v.Encoding)
			}
			got, err := DecodeEpochInfo(v.Encoding)
			if err != nil {
				t.Fatal(err)
			}
			if got != ei {
				t.Fatalf("decodes to %+v, vector says %+v", got, ei)
			}
		})
	}
}
