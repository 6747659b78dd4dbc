package pki

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/strata-mix/strata/sphinx"
)

// appChain drives an App through ABCI calls, as CometBFT does, on a real
// bbolt file.
type appChain struct {
	t      *testing.T
	path   string
	app    *App
	height int64
	vals   []ed25519.PrivateKey
}

func newAppChain(t *testing.T) *appChain {
	t.Helper()
	c := &appChain{t: t, path: filepath.Join(t.TempDir(), "pki.db")}
	c.open()
	state, _ := json.Marshal(GenesisState{Params: testParams()})
	var vals []abci.ValidatorUpdate
	for i := range 2 {
		k := detKey("validator", i)
		c.vals = append(c.vals, k)
		vals = append(vals, abci.ValidatorUpdate{PubKeyType: "ed25519", PubKeyBytes: k.Public().(ed25519.PublicKey), Power: 1})
	}
	if _, err := c.app.InitChain(context.Background(), &abci.InitChainRequest{ChainId: testChainID, Validators: vals, AppStateBytes: state, InitialHeight: 1}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *appChain) open() {
	c.t.Helper()
	app, err := OpenApp(c.path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.app = app
	c.t.Cleanup(func() { app.Close() })
}

// block finalizes and commits a block and returns its results and hash.
func (c *appChain) block(txs ...[]byte) ([]*abci.ExecTxResult, []byte) {
	c.t.Helper()
	c.height++
	h := blockHash(c.height)
	res, err := c.app.FinalizeBlock(context.Background(), &abci.FinalizeBlockRequest{Height: c.height, Hash: h[:], Txs: txs})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.app.Commit(context.Background(), &abci.CommitRequest{}); err != nil {
		c.t.Fatal(err)
	}
	return res.TxResults, res.AppHash
}

func (c *appChain) checkTx(tx []byte) Code {
	res, err := c.app.CheckTx(context.Background(), &abci.CheckTxRequest{Tx: tx})
	if err != nil {
		c.t.Fatal(err)
	}
	return Code(res.Code)
}

func (c *appChain) query(path string, prove bool) *abci.QueryResponse {
	res, err := c.app.Query(context.Background(), &abci.QueryRequest{Path: path, Prove: prove})
	if err != nil {
		c.t.Fatal(err)
	}
	return res
}

// admit registers relays and admits them with both validators' attestations.
func (c *appChain) admit(relays ...ed25519.PrivateKey) {
	c.t.Helper()
	var txs [][]byte
	for _, k := range relays {
		tx, err := NewIntention(context.Background(), testChainID, 0, k, RoleRelay, []string{"/ip4/127.0.0.1/tcp/1"}, testParams().PowBits)
		if err != nil {
			c.t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	c.block(txs...)
	txs = nil
	for _, k := range relays {
		for _, v := range c.vals {
			tx, _ := SignTx(testChainID, 0, v, &Attestation{Subject: idOf(k)})
			txs = append(txs, tx)
		}
		mk, _ := SignTx(testChainID, 0, k, &MixKeys{First: 0, Keys: []sphinx.PublicKey{mixKeyOf(k, 0), mixKeyOf(k, 1)}})
		txs = append(txs, mk)
	}
	c.block(txs...)
	beacon := blockHash(1)
	txs = nil
	for _, k := range relays {
		// Hedged proofs made the same way, so twin chains stay equal.
		v, _ := ProveVRFWith(vectorRand(string(k.Seed())), k, beacon)
		tx, _ := SignTx(testChainID, 0, k, v)
		txs = append(txs, tx)
	}
	res, _ := c.block(txs...)
	for i, r := range res {
		if r.Code != 0 {
			c.t.Fatalf("vrf %d: %s", i, r.Log)
		}
	}
}

func TestAppResultsCarryTheCodes(t *testing.T) {
	c := newAppChain(t)
	c.block()
	relay := detKey("relay", 0)
	leave, _ := SignTx(testChainID, 0, relay, &Leave{})
	if code := c.checkTx(leave); code != CodeUnknownNode {
		t.Fatalf("CheckTx of a stranger's leave: %v", code)
	}
	if code := c.checkTx(make([]byte, MaxTxSize+1)); code != CodeMalformed {
		t.Fatalf("CheckTx of an oversized tx: %v", code)
	}
	in, _ := NewIntention(context.Background(), testChainID, 0, relay, RoleRelay, []string{"/ip4/127.0.0.1/tcp/1"}, testParams().PowBits)
	if code := c.checkTx(in); code != CodeOK {
		t.Fatalf("CheckTx of an intention: %v", code)
	}
	if code := c.checkTx(in); code != CodeReplayed {
		t.Fatalf("second CheckTx of the same intention: %v", code)
	}
	res, _ := c.block(in, in, []byte{0xff})
	if res[0].Code != 0 || Code(res[1].Code) != CodeReplayed || Code(res[2].Code) != CodeMalformed || res[2].Codespace != Codespace {
		t.Fatalf("block results %v", res)
	}
	if len(res[0].Events) != 1 || res[0].Events[0].Attributes[0].Value != "intention" {
		t.Fatalf("events %v", res[0].Events)
	}
	// After the commit, the mempool view is the committed state again.
	if code := c.checkTx(in); code != CodeReplayed {
		t.Fatalf("CheckTx after commit: %v", code)
	}
}

func TestAppStateSurvivesReopenWithItsAppHash(t *testing.T) {
	c := newAppChain(t)
	c.block()
	c.admit(keysOf("relay", 3)...)
	_, hash := c.block()
	info, _ := c.app.Info(context.Background(), nil)
	if info.LastBlockHeight != c.height || string(info.LastBlockAppHash) != string(hash) {
		t.Fatalf("info %d %X, committed %d %X", info.LastBlockHeight, info.LastBlockAppHash, c.height, hash)
	}
	before := c.query(QueryTopology+"/0", false).Value

	// A block finalized but not committed (a crash before Commit) is not
	// in the file: CometBFT replays it.
	h := blockHash(c.height + 1)
	if _, err := c.app.FinalizeBlock(context.Background(), &abci.FinalizeBlockRequest{Height: c.height + 1, Hash: h[:]}); err != nil {
		t.Fatal(err)
	}
	c.app.Close()
	c.open()
	info, _ = c.app.Info(context.Background(), nil)
	if info.LastBlockHeight != c.height || string(info.LastBlockAppHash) != string(hash) {
		t.Fatalf("reopened at %d %X, want %d %X", info.LastBlockHeight, info.LastBlockAppHash, c.height, hash)
	}
	if after := c.query(QueryTopology+"/0", false).Value; string(after) != string(before) {
		t.Fatal("topology changed across reopen")
	}
	// The same block applied again gives the same hash as on a node that
	// never stopped.
	twin := newAppChain(t)
	twin.block()
	twin.admit(keysOf("relay", 3)...)
	twin.block()
	_, h1 := c.block()
	_, h2 := twin.block()
	if string(h1) != string(h2) {
		t.Fatal("reopened app and twin disagree on the next app hash")
	}
}

func TestQueryAnswersAreProvable(t *testing.T) {
	c := newAppChain(t)
	c.block()
	c.admit(keysOf("relay", 3)...)
	_, appHash := c.block()
	top := c.query(QueryTopology+"/0", true)
	if top.Code != 0 || top.ProofOps == nil || top.Height != c.height {
		t.Fatalf("topology query: %+v", top)
	}
	proof := top.ProofOps.Ops[0].Data
	if err := verifyProof(appHash, proof, top.Value, 2, 3); err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), top.Value...)
	tampered[len(tampered)-1] ^= 1
	if err := verifyProof(appHash, proof, tampered, 2, 3); err == nil {
		t.Fatal("tampered document verifies")
	}
	ep := c.query(QueryEpoch, true)
	if err := verifyProof(appHash, ep.ProofOps.Ops[0].Data, ep.Value, 1); err != nil {
		t.Fatal(err)
	}
	if err := verifyProof(appHash, ep.ProofOps.Ops[0].Data, top.Value, 1); err == nil {
		t.Fatal("a topology verifies in the epoch slot")
	}
	other := append([]byte(nil), appHash...)
	other[0] ^= 1
	if err := verifyProof(other, proof, top.Value, 2, 3); err == nil {
		t.Fatal("proof verifies against another app hash")
	}
	for path, code := range map[string]uint32{
		QueryTopology + "/7": QueryCodeNotFound,
		QueryTopology + "/x": QueryCodeBadRequest,
		QueryNode + "/00":    QueryCodeBadRequest,
		"/nothing":           QueryCodeBadRequest,
		QueryNode + "/" + hexID(detKey("nobody", 0)): QueryCodeNotFound,
	} {
		if res := c.query(path, false); res.Code != code {
			t.Errorf("%s: code %d, want %d", path, res.Code, code)
		}
	}
	var views []NodeView
	if err := json.Unmarshal(c.query(QueryNodes, false).Value, &views); err != nil || len(views) != 3 {
		t.Fatalf("nodes: %v, %d views", err, len(views))
	}
	if views[0].Status != "admitted" || len(views[0].KeyEpochs) != 2 || !views[0].HasVRF || len(views[0].Attesters) != 2 {
		t.Fatalf("node view %+v", views[0])
	}
	res, _ := c.app.Query(context.Background(), &abci.QueryRequest{Path: QueryEpoch, Height: c.height - 1})
	if res.Code != QueryCodeBadRequest {
		t.Fatal("query of an old height answered")
	}
	if err := queryError("/x", QueryCodeNotFound, ""); !errors.Is(err, ErrNotFound) {
		t.Fatal("not-found query error does not wrap ErrNotFound")
	}
}

func hexID(k ed25519.PrivateKey) string {
	id := idOf(k)
	return hex.EncodeToString(id[:])
}
