package e2e

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/thomas-vilte/mls-go/ciphersuite"
	"github.com/thomas-vilte/mls-go/framing"
	"github.com/thomas-vilte/mls-go/group"
	"github.com/thomas-vilte/mls-go/keypackages"
	"github.com/thomas-vilte/mls-go/schedule"
	"github.com/thomas-vilte/mls-go/secrettree"
	"github.com/thomas-vilte/mls-go/treesync"
)

// The IETF mlswg interop vectors (testdata/mls, cipher suite 1 entries;
// origin in testdata/mls/README.md) checked against the MLS library our
// Backend wraps. They exercise exactly the code paths mlsgo.go uses: the
// same decoders, JoinFromWelcome, the key schedule, the secret tree and
// handshake processing.

func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "mls", name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// mlsBody strips the 4-byte MLSMessage header (version, wire_format) the
// vectors put in front of KeyPackages and Welcomes.
func mlsBody(t *testing.T, b []byte, wireFormat uint16) []byte {
	t.Helper()
	if len(b) < 4 || binary.BigEndian.Uint16(b[0:2]) != 1 || binary.BigEndian.Uint16(b[2:4]) != wireFormat {
		t.Fatalf("not an MLSMessage of wire format %d: %x", wireFormat, b[:min(len(b), 4)])
	}
	return b[4:]
}

func TestVectorsMessages(t *testing.T) {
	var vecs []map[string]string
	loadVectors(t, "messages.json", &vecs)
	if len(vecs) == 0 {
		t.Fatal("no vectors")
	}
	roundTrip := func(t *testing.T, name string, in []byte, enc func([]byte) ([]byte, error)) {
		t.Helper()
		out, err := enc(in)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("%s: re-encoding differs\n got %x\nwant %x", name, out, in)
		}
	}
	mlsMsg := func(b []byte) ([]byte, error) {
		m, err := framing.UnmarshalMLSMessage(b)
		if err != nil {
			return nil, err
		}
		return m.Marshal(), nil
	}
	// proposal decodes a bare proposal body of type typ (the vectors hold the
	// Add/Remove/... struct, not the Proposal with its type).
	proposal := func(typ uint16) func([]byte) ([]byte, error) {
		return func(b []byte) ([]byte, error) {
			p, err := group.UnmarshalProposal(append(binary.BigEndian.AppendUint16(nil, typ), b...))
			if err != nil {
				return nil, err
			}
			return group.ProposalMarshal(p)[2:], nil
		}
	}
	for i, v := range vecs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			for _, f := range []string{"mls_welcome", "mls_group_info", "mls_key_package", "public_message_application", "public_message_proposal", "public_message_commit", "private_message"} {
				roundTrip(t, f, unhex(t, v[f]), mlsMsg)
			}
			roundTrip(t, "group_secrets", unhex(t, v["group_secrets"]), func(b []byte) ([]byte, error) {
				gs, err := group.UnmarshalGroupSecrets(b)
				if err != nil {
					return nil, err
				}
				return gs.Marshal(), nil
			})
			roundTrip(t, "commit", unhex(t, v["commit"]), func(b []byte) ([]byte, error) {
				c, err := group.UnmarshalCommit(b)
				if err != nil {
					return nil, err
				}
				return c.Marshal(), nil
			})
			roundTrip(t, "ratchet_tree", unhex(t, v["ratchet_tree"]), func(b []byte) ([]byte, error) {
				tr, err := treesync.UnmarshalTreeFromExtension(b, ciphersuite.MLS128DHKEMX25519)
				if err != nil {
					return nil, err
				}
				return tr.MarshalTreeRFC(), nil
			})
			for f, typ := range map[string]uint16{"add_proposal": 1, "update_proposal": 2, "remove_proposal": 3, "pre_shared_key_proposal": 4, "re_init_proposal": 5, "external_init_proposal": 6, "group_context_extensions_proposal": 7} {
				roundTrip(t, f, unhex(t, v[f]), proposal(typ))
			}
		})
	}
}

func TestVectorsWelcome(t *testing.T) {
	var vecs []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		InitPriv    string `json:"init_priv"`
		SignerPub   string `json:"signer_pub"`
		KeyPackage  string `json:"key_package"`
		Welcome     string `json:"welcome"`
	}
	loadVectors(t, "welcome.json", &vecs)
	if len(vecs) == 0 {
		t.Fatal("no suite 1 vectors")
	}
	for i, v := range vecs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if v.CipherSuite != uint16(Suite) {
				t.Fatalf("suite %d", v.CipherSuite)
			}
			kp, err := keypackages.UnmarshalKeyPackage(mlsBody(t, unhex(t, v.KeyPackage), 5))
			if err != nil {
				t.Fatal(err)
			}
			initPriv, err := ecdh.X25519().NewPrivateKey(unhex(t, v.InitPriv))
			if err != nil {
				t.Fatal(err)
			}
			w, err := group.UnmarshalWelcome(mlsBody(t, unhex(t, v.Welcome), 3))
			if err != nil {
				t.Fatal(err)
			}
			// JoinFromWelcome decrypts the group secrets and the GroupInfo,
			// runs the key schedule from the joiner secret and checks the
			// confirmation tag.
			if _, err := group.JoinFromWelcome(w, kp, &keypackages.KeyPackagePrivateKeys{InitKey: initPriv}, nil); err != nil {
				t.Fatalf("join: %v", err)
			}
			pub := ciphersuite.NewMLSSignaturePublicKey(unhex(t, v.SignerPub), ciphersuite.MLS128DHKEMX25519.SignatureScheme())
			if err := ciphersuite.VerifyWithLabel(pub, "GroupInfoTBS", w.GroupInfo.MarshalTBS(), ciphersuite.NewSignature(w.GroupInfo.Signature)); err != nil {
				t.Fatalf("group info signature: %v", err)
			}
			// A corrupted Welcome must fail.
			bad := unhex(t, v.Welcome)
			bad[len(bad)-1] ^= 1
			if w2, err := group.UnmarshalWelcome(bad[4:]); err == nil {
				if _, err := group.JoinFromWelcome(w2, kp, &keypackages.KeyPackagePrivateKeys{InitKey: initPriv}, nil); err == nil {
					t.Fatal("corrupted welcome accepted")
				}
			}
		})
	}
}

func TestVectorsKeySchedule(t *testing.T) {
	var vecs []struct {
		CipherSuite       uint16 `json:"cipher_suite"`
		GroupID           string `json:"group_id"`
		InitialInitSecret string `json:"initial_init_secret"`
		Epochs            []map[string]any
	}
	loadVectors(t, "key-schedule.json", &vecs)
	if len(vecs) == 0 {
		t.Fatal("no suite 1 vectors")
	}
	cs := ciphersuite.MLS128DHKEMX25519
	for _, v := range vecs {
		init := ciphersuite.NewSecret(unhex(t, v.InitialInitSecret))
		for i, e := range v.Epochs {
			h := func(k string) []byte { return unhex(t, e[k].(string)) }
			gc := &group.GroupContext{
				Version:                 1,
				CipherSuite:             cs,
				GroupID:                 group.NewGroupID(unhex(t, v.GroupID)),
				Epoch:                   group.NewGroupEpoch(uint64(i)),
				TreeHash:                h("tree_hash"),
				ConfirmedTranscriptHash: h("confirmed_transcript_hash"),
			}
			if got := gc.Marshal(); !bytes.Equal(got, h("group_context")) {
				t.Fatalf("epoch %d group_context\n got %x\nwant %x", i, got, h("group_context"))
			}
			ks := schedule.NewKeySchedule(cs, init)
			ks.SetCommitSecret(ciphersuite.NewSecret(h("commit_secret")))
			joiner, err := ks.ComputeJoinerSecret(gc.Marshal())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(joiner.AsSlice(), h("joiner_secret")) {
				t.Fatalf("epoch %d joiner_secret", i)
			}
			if err := ks.SetPskSecretDirect(ciphersuite.NewSecret(h("psk_secret"))); err != nil {
				t.Fatal(err)
			}
			welcome, err := ks.ComputeWelcomeSecret()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(welcome.AsSlice(), h("welcome_secret")) {
				t.Fatalf("epoch %d welcome_secret", i)
			}
			if _, err := ks.ComputeEpochSecret(gc.Marshal()); err != nil {
				t.Fatal(err)
			}
			s, err := ks.DeriveEpochSecrets()
			if err != nil {
				t.Fatal(err)
			}
			for name, got := range map[string]*ciphersuite.Secret{
				"sender_data_secret": s.SenderDataSecret, "encryption_secret": s.EncryptionSecret,
				"exporter_secret": s.ExporterSecret, "epoch_authenticator": s.AuthenticationSecret,
				"external_secret": s.ExternalSecret, "confirmation_key": s.ConfirmationKey,
				"membership_key": s.MembershipKey, "resumption_psk": s.ResumptionSecret, "init_secret": s.InitSecret,
			} {
				if got == nil || !bytes.Equal(got.AsSlice(), h(name)) {
					t.Fatalf("epoch %d %s mismatch", i, name)
				}
			}
			ext, err := ciphersuite.DeriveKeyPair(cs, s.ExternalSecret.AsSlice())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ext.PublicKey().Bytes(), h("external_pub")) {
				t.Fatalf("epoch %d external_pub", i)
			}
			ex := e["exporter"].(map[string]any)
			// Our exporter (mlsExporter), not mls-go's schedule.Exporter, which
			// uses the label "exporter" where RFC 9420 says "exported".
			out, err := mlsExporter(s.ExporterSecret, []byte(ex["label"].(string)), unhex(t, ex["context"].(string)), int(ex["length"].(float64)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, unhex(t, ex["secret"].(string))) {
				t.Fatalf("epoch %d exporter", i)
			}
			init = s.InitSecret.Clone()
		}
	}
}

func TestVectorsSecretTree(t *testing.T) {
	type gen struct {
		Generation       uint32 `json:"generation"`
		ApplicationKey   string `json:"application_key"`
		ApplicationNonce string `json:"application_nonce"`
		HandshakeKey     string `json:"handshake_key"`
		HandshakeNonce   string `json:"handshake_nonce"`
	}
	var vecs []struct {
		EncryptionSecret string `json:"encryption_secret"`
		SenderData       struct {
			SenderDataSecret string `json:"sender_data_secret"`
			Ciphertext       string `json:"ciphertext"`
			Key              string `json:"key"`
			Nonce            string `json:"nonce"`
		} `json:"sender_data"`
		Leaves [][]gen `json:"leaves"`
	}
	loadVectors(t, "secret-tree.json", &vecs)
	if len(vecs) == 0 {
		t.Fatal("no suite 1 vectors")
	}
	cs := ciphersuite.MLS128DHKEMX25519
	for vi, v := range vecs {
		// sender_data key and nonce (RFC 9420 §6.3.2) from the first
		// Nh bytes of the ciphertext.
		sd := ciphersuite.NewSecret(unhex(t, v.SenderData.SenderDataSecret))
		sample := unhex(t, v.SenderData.Ciphertext)
		sample = sample[:min(len(sample), cs.HashLength())]
		key, err := sd.KdfExpandLabel("key", sample, cs.AeadKeyLength())
		if err != nil {
			t.Fatal(err)
		}
		nonce, err := sd.KdfExpandLabel("nonce", sample, cs.AeadNonceLength())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(key.AsSlice(), unhex(t, v.SenderData.Key)) || !bytes.Equal(nonce.AsSlice(), unhex(t, v.SenderData.Nonce)) {
			t.Fatalf("vector %d: sender data key/nonce mismatch", vi)
		}
		for li, gens := range v.Leaves {
			tree, err := secrettree.NewTree(ciphersuite.NewSecret(unhex(t, v.EncryptionSecret)), uint32(len(v.Leaves)), cs)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := tree.LeafForIndex(uint32(li))
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range gens {
				for name, f := range map[string]func(uint32) ([]byte, error){
					g.ApplicationKey: leaf.ApplicationKey, g.ApplicationNonce: leaf.ApplicationNonce,
					g.HandshakeKey: leaf.HandshakeKey, g.HandshakeNonce: leaf.HandshakeNonce,
				} {
					got, err := f(g.Generation)
					if err != nil {
						t.Fatalf("vector %d leaf %d gen %d: %v", vi, li, g.Generation, err)
					}
					if !bytes.Equal(got, unhex(t, name)) {
						t.Fatalf("vector %d leaf %d gen %d: got %x want %s", vi, li, g.Generation, got, name)
					}
				}
			}
		}
	}
}

type passiveVector struct {
	CipherSuite               uint16  `json:"cipher_suite"`
	KeyPackage                string  `json:"key_package"`
	SignaturePriv             string  `json:"signature_priv"`
	EncryptionPriv            string  `json:"encryption_priv"`
	InitPriv                  string  `json:"init_priv"`
	Welcome                   string  `json:"welcome"`
	RatchetTree               *string `json:"ratchet_tree"`
	InitialEpochAuthenticator string  `json:"initial_epoch_authenticator"`
	ExternalPsks              []struct {
		PskID string `json:"psk_id"`
		Psk   string `json:"psk"`
	} `json:"external_psks"`
	Epochs []struct {
		Proposals          []string `json:"proposals"`
		Commit             string   `json:"commit"`
		EpochAuthenticator string   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// runPassive joins with the vector's Welcome and follows every epoch,
// comparing epoch authenticators. Proposals and commits go through the
// same handshake path as the Backend (handshake in mlsgo.go).
func runPassive(t *testing.T, v *passiveVector) {
	t.Helper()
	kp, err := keypackages.UnmarshalKeyPackage(mlsBody(t, unhex(t, v.KeyPackage), 5))
	if err != nil {
		t.Fatal(err)
	}
	initPriv, err := ecdh.X25519().NewPrivateKey(unhex(t, v.InitPriv))
	if err != nil {
		t.Fatal(err)
	}
	encPriv, err := ecdh.X25519().NewPrivateKey(unhex(t, v.EncryptionPriv))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(initPriv.PublicKey().Bytes(), kp.InitKey) {
		t.Fatal("init_priv does not match the key package")
	}
	psks := map[string][]byte{}
	for _, p := range v.ExternalPsks {
		psks[string(unhex(t, p.PskID))] = unhex(t, p.Psk)
	}
	w, err := group.UnmarshalWelcome(mlsBody(t, unhex(t, v.Welcome), 3))
	if err != nil {
		t.Fatal(err)
	}
	g, err := group.JoinFromWelcome(w, kp, &keypackages.KeyPackagePrivateKeys{InitKey: initPriv, EncryptionKey: encPriv}, psks)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), unhex(t, v.InitialEpochAuthenticator)) {
		t.Fatal("initial epoch authenticator mismatch")
	}
	for i, e := range v.Epochs {
		for _, p := range e.Proposals {
			if err := handshake(g, unhex(t, p)); err != nil {
				t.Fatalf("epoch %d proposal: %v", i, err)
			}
		}
		if err := handshake(g, unhex(t, e.Commit)); err != nil {
			t.Fatalf("epoch %d commit: %v", i, err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), unhex(t, e.EpochAuthenticator)) {
			t.Fatalf("epoch %d: epoch authenticator mismatch", i)
		}
	}
}

func testPassive(t *testing.T, file string) {
	var vecs []passiveVector
	loadVectors(t, file, &vecs)
	ran := 0
	for i := range vecs {
		if vecs[i].RatchetTree == nil {
			ran++
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { runPassive(t, &vecs[i]) })
	}
	if ran == 0 {
		t.Fatal("no vector ran")
	}
}

func TestVectorsPassiveClientWelcome(t *testing.T) { testPassive(t, "passive-client-welcome.json") }

func TestVectorsPassiveClientHandlingCommit(t *testing.T) {
	testPassive(t, "passive-client-handling-commit.json")
}
