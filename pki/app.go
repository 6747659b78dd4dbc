package pki

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	abci "github.com/cometbft/cometbft/abci/types"
)

// AppVersion is the application's protocol version, reported in Info.
const AppVersion = 1

// GenesisState is the application's part of the genesis document
// (app_state). A missing or empty app_state means DefaultParams.
type GenesisState struct {
	Params Params `json:"params"`
}

// App is the PKI as an ABCI application. CometBFT drives it through
// CheckTx, FinalizeBlock and Commit; clients read it through Query. The
// state lives in memory and in a bbolt file (see store); the rules live in
// Machine. Every method is safe for concurrent use.
type App struct {
	abci.BaseApplication

	log   *slog.Logger
	store *store

	mu        sync.Mutex
	base      map[string][]byte // committed state
	last      committed
	genesis   map[string][]byte // InitChain's writes, saved with block 1
	block     *kv               // writes of the block being finalized
	blockMeta committed
	check     *kv // the mempool's view: committed state plus accepted CheckTx
}

var _ abci.Application = (*App)(nil)

// OpenApp opens (or creates) the application state in the bbolt file at
// path. logger may be nil.
func OpenApp(path string, logger *slog.Logger) (*App, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s, err := openStore(path)
	if err != nil {
		return nil, err
	}
	base, last, err := s.load()
	if err != nil {
		s.close()
		return nil, err
	}
	a := &App{log: logger, store: s, base: base, last: last}
	a.check = newKV(a.base)
	return a, nil
}

// Close closes the state file.
func (a *App) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store.close()
}

// Info reports the last committed height and application hash, from which
// CometBFT replays the blocks the application missed.
func (a *App) Info(context.Context, *abci.InfoRequest) (*abci.InfoResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &abci.InfoResponse{
		Data:             "strata-pki",
		Version:          "1",
		AppVersion:       AppVersion,
		LastBlockHeight:  a.last.height,
		LastBlockAppHash: a.last.appHash,
	}, nil
}

// InitChain writes the genesis state: chain id, parameters from
// app_state, and the validator set (Ed25519 keys only).
func (a *App) InitChain(_ context.Context, req *abci.InitChainRequest) (*abci.InitChainResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	gs := GenesisState{Params: DefaultParams()}
	if len(req.AppStateBytes) > 0 && string(req.AppStateBytes) != "null" && string(req.AppStateBytes) != "{}" {
		if err := json.Unmarshal(req.AppStateBytes, &gs); err != nil {
			return nil, fmt.Errorf("pki: genesis app_state: %w", err)
		}
	}
	vals := make([]Validator, 0, len(req.Validators))
	for _, v := range req.Validators {
		if v.PubKeyType != "ed25519" || len(v.PubKeyBytes) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("pki: genesis validator key of type %q: only ed25519 can sign attestations", v.PubKeyType)
		}
		vals = append(vals, Validator{PubKey: [32]byte(v.PubKeyBytes), Power: v.Power})
	}
	a.base = make(map[string][]byte)
	s := newKV(a.base)
	if err := initState(s, req.ChainId, gs.Params, vals); err != nil {
		return nil, err
	}
	a.genesis = make(map[string][]byte, len(s.writes))
	for k, v := range s.writes {
		a.genesis[k] = v
	}
	a.last = committed{chain: nextChain([32]byte{}, req.InitialHeight-1, s.digest())}
	s.apply()
	l, err := leaves(state{kv: newKV(a.base)}, a.last.chain)
	if err != nil {
		return nil, err
	}
	a.last.appHash = rootOf(l)
	a.check = newKV(a.base)
	a.log.Info("genesis", "chain", req.ChainId, "validators", len(vals), "params", gs.Params)
	return &abci.InitChainResponse{AppHash: a.last.appHash}, nil
}

// CheckTx admits to the mempool the transactions that the state would
// accept after the ones already admitted.
func (a *App) CheckTx(_ context.Context, req *abci.CheckTxRequest) (*abci.CheckTxResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(req.Tx) > MaxTxSize {
		return &abci.CheckTxResponse{Code: uint32(CodeMalformed), Codespace: Codespace, Log: fmt.Sprintf("transaction of %d bytes", len(req.Tx))}, nil
	}
	m, err := newMachine(a.check)
	if err != nil {
		return &abci.CheckTxResponse{Code: uint32(CodeInternal), Codespace: Codespace, Log: err.Error()}, nil
	}
	_, err = m.ApplyTx(req.Tx)
	if err != nil {
		if CodeOf(err) == CodeInternal {
			a.log.Error("check tx", "err", err)
		}
		return &abci.CheckTxResponse{Code: uint32(CodeOf(err)), Codespace: Codespace, Log: err.Error()}, nil
	}
	return &abci.CheckTxResponse{Code: uint32(CodeOK)}, nil
}

// FinalizeBlock applies a decided block: it opens an epoch when due,
// applies each transaction (a refused one gets its code and changes
// nothing), freezes topologies, and returns the new application hash.
func (a *App) FinalizeBlock(_ context.Context, req *abci.FinalizeBlockRequest) (*abci.FinalizeBlockResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(req.Hash) != 32 {
		return nil, fmt.Errorf("pki: block %d has a hash of %d bytes", req.Height, len(req.Hash))
	}
	a.block = newKV(a.base)
	m, err := newMachine(a.block)
	if err != nil {
		return nil, err
	}
	if err := m.BeginBlock(req.Height, [32]byte(req.Hash)); err != nil {
		return nil, err
	}
	res := &abci.FinalizeBlockResponse{TxResults: make([]*abci.ExecTxResult, len(req.Txs))}
	for i, raw := range req.Txs {
		tx, err := m.ApplyTx(raw)
		r := &abci.ExecTxResult{Code: uint32(CodeOf(err)), Codespace: Codespace}
		if err != nil {
			r.Log = err.Error()
			if CodeOf(err) == CodeInternal {
				return nil, err
			}
		} else {
			r.Events = []abci.Event{txEvent(tx)}
		}
		res.TxResults[i] = r
	}
	if err := m.EndBlock(req.Height); err != nil {
		return nil, err
	}
	chain := nextChain(a.last.chain, req.Height, a.block.digest())
	l, err := leaves(m.st, chain)
	if err != nil {
		return nil, err
	}
	a.blockMeta = committed{height: req.Height, appHash: rootOf(l), chain: chain}
	res.AppHash = a.blockMeta.appHash
	return res, nil
}

func txEvent(tx *Tx) abci.Event {
	subject := tx.SignerID()
	if at, ok := tx.Body.(*Attestation); ok {
		subject = at.Subject
	}
	return abci.Event{Type: "strata_pki", Attributes: []abci.EventAttribute{
		{Key: "tx", Value: tx.Body.Type().String(), Index: true},
		{Key: "node", Value: hex.EncodeToString(subject[:]), Index: true},
		{Key: "epoch", Value: fmt.Sprint(tx.Epoch)},
	}}
}

// Commit makes the finalized block's state durable: its writes (and, at
// the first block, the genesis state) go to disk in one fsynced
// transaction before Commit returns. The mempool view restarts from the
// new state; CometBFT then rechecks the transactions left in the mempool.
func (a *App) Commit(context.Context, *abci.CommitRequest) (*abci.CommitResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.block == nil {
		return nil, errors.New("pki: commit without a finalized block")
	}
	writes := a.block.writes
	if a.genesis != nil {
		for k, v := range writes {
			a.genesis[k] = v
		}
		writes = a.genesis
	}
	if err := a.store.commit(writes, a.blockMeta); err != nil {
		return nil, err
	}
	a.genesis = nil
	a.block.apply()
	a.block = nil
	a.last = a.blockMeta
	a.check = newKV(a.base)
	return &abci.CommitResponse{}, nil
}
