package pki

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	cfg "github.com/cometbft/cometbft/config"
	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	nm "github.com/cometbft/cometbft/node"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	"github.com/cometbft/cometbft/proxy"
	"github.com/cometbft/cometbft/rpc/client/local"
	"github.com/cometbft/cometbft/types"
)

// A validator's home directory is CometBFT's layout plus the application
// state:
//
//	config/genesis.json            the chain's genesis document
//	config/priv_validator_key.json consensus key (also signs attestations)
//	config/node_key.json           CometBFT p2p key
//	data/priv_validator_state.json last signed height/round/step
//	data/*.db, data/cs.wal         CometBFT's block store, state and WAL (pebble)
//	data/pki.db                    the application state (bbolt)
const appStateFile = "pki.db"

// HomeKeys are the public halves of a validator home's keys.
type HomeKeys struct {
	// ValidatorKey is the consensus key: it votes and signs attestations.
	ValidatorKey ed25519.PublicKey
	// P2PID is the CometBFT node id, for persistent_peers entries.
	P2PID string
}

func homeConfig(home string) *cfg.Config {
	c := cfg.DefaultConfig()
	c.SetRoot(home)
	return c
}

// InitHome creates the directories and keys of a validator home, keeping
// any key that exists.
func InitHome(home string) (HomeKeys, error) {
	c := homeConfig(home)
	for _, d := range []string{filepath.Join(home, cfg.DefaultConfigDir), filepath.Join(home, cfg.DefaultDataDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return HomeKeys{}, fmt.Errorf("pki: init home: %w", err)
		}
	}
	pv, err := loadOrGenFilePV(c)
	if err != nil {
		return HomeKeys{}, err
	}
	nk, err := p2p.LoadOrGenNodeKey(c.NodeKeyFile())
	if err != nil {
		return HomeKeys{}, fmt.Errorf("pki: node key: %w", err)
	}
	return HomeKeys{ValidatorKey: ed25519.PublicKey(pv.Key.PubKey.Bytes()), P2PID: string(nk.ID())}, nil
}

// loadOrGenFilePV checks the validator key and state files before
// CometBFT reads them, because its loader exits the process on a bad file.
func loadOrGenFilePV(c *cfg.Config) (*privval.FilePV, error) {
	keyFile, stateFile := c.PrivValidatorKeyFile(), c.PrivValidatorStateFile()
	b, err := os.ReadFile(keyFile)
	if errors.Is(err, os.ErrNotExist) {
		pv, err := privval.GenFilePV(keyFile, stateFile, nil)
		if err != nil {
			return nil, fmt.Errorf("pki: validator key: %w", err)
		}
		return pv, saving(pv.Save)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: validator key: %w", err)
	}
	var key privval.FilePVKey
	if err := cmtjson.Unmarshal(b, &key); err != nil || key.PrivKey == nil {
		return nil, fmt.Errorf("pki: validator key %s: unreadable (%v)", keyFile, err)
	}
	if _, ok := key.PrivKey.(cmted25519.PrivKey); !ok {
		return nil, fmt.Errorf("pki: validator key %s is %s, need ed25519", keyFile, key.PrivKey.Type())
	}
	if b, err := os.ReadFile(stateFile); errors.Is(err, os.ErrNotExist) {
		pv := privval.NewFilePV(key.PrivKey, keyFile, stateFile)
		return pv, saving(pv.LastSignState.Save)
	} else if err != nil {
		return nil, fmt.Errorf("pki: validator state: %w", err)
	} else if err := cmtjson.Unmarshal(b, &privval.FilePVLastSignState{}); err != nil {
		return nil, fmt.Errorf("pki: validator state %s: %w", stateFile, err)
	}
	return privval.LoadFilePV(keyFile, stateFile), nil
}

// saving runs one of CometBFT's Save methods, which panic when the file
// cannot be written, and returns the failure as an error.
func saving(save func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pki: save validator files: %v", r)
		}
	}()
	save()
	return nil
}

// GenesisValidator is a validator of the genesis document.
type GenesisValidator struct {
	PubKey ed25519.PublicKey
	Power  int64
	Name   string
}

// Genesis describes a new chain.
type Genesis struct {
	ChainID    string
	Time       time.Time
	Params     Params
	Validators []GenesisValidator
}

// WriteGenesis writes the genesis document of g to the home. Every
// validator of a chain needs the same file.
func WriteGenesis(home string, g Genesis) error {
	if err := g.Params.Validate(); err != nil {
		return err
	}
	state, err := json.Marshal(GenesisState{Params: g.Params})
	if err != nil {
		return err
	}
	doc := &types.GenesisDoc{
		GenesisTime:     g.Time.UTC(),
		ChainID:         g.ChainID,
		InitialHeight:   1,
		ConsensusParams: types.DefaultConsensusParams(),
		AppState:        state,
	}
	for _, v := range g.Validators {
		if len(v.PubKey) != ed25519.PublicKeySize {
			return fmt.Errorf("pki: genesis validator %q: key of %d bytes", v.Name, len(v.PubKey))
		}
		pk := cmted25519.PubKey(v.PubKey)
		doc.Validators = append(doc.Validators, types.GenesisValidator{Address: pk.Address(), PubKey: pk, Power: v.Power, Name: v.Name})
	}
	if err := doc.ValidateAndComplete(); err != nil {
		return fmt.Errorf("pki: genesis: %w", err)
	}
	if err := doc.SaveAs(homeConfig(home).GenesisFile()); err != nil {
		return fmt.Errorf("pki: genesis: %w", err)
	}
	return nil
}

// ValidatorConfig configures a validator node. Only Home is required.
type ValidatorConfig struct {
	// Home is the validator's directory (see InitHome); it must hold a
	// genesis document.
	Home string
	// P2PListen and RPCListen are CometBFT's listen addresses
	// ("tcp://127.0.0.1:26656"). Default: free ports on 127.0.0.1.
	P2PListen, RPCListen string
	// Peers are other validators, as "p2pid@host:port".
	Peers []string
	// BlockInterval is the pause after each block (timeout_commit); the
	// other consensus timeouts scale with it. Default 1s.
	BlockInterval time.Duration
	// Attest makes the validator probe registered nodes and attest the
	// ones that answer (see Attester). Default on; tests of consensus
	// alone turn it off.
	NoAttest bool
	// Attester tunes the prober.
	Attester AttesterConfig
	// Logger receives the node's logs. Default: discarded.
	Logger *slog.Logger
}

// ValidatorNode is a running validator: CometBFT with the PKI application in the
// same process, and the attester.
type ValidatorNode struct {
	cmt      *nm.Node
	app      *App
	dbs      *dbTracker
	client   *local.Local
	key      ed25519.PrivateKey
	rpc      string
	p2p      string
	log      *slog.Logger
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// StartValidator starts a validator from its home. It resumes at the height
// the home holds: CometBFT replays to the application any block the
// application missed. The node runs until Stop or until ctx ends.
func StartValidator(ctx context.Context, nc ValidatorConfig) (*ValidatorNode, error) {
	if nc.Logger == nil {
		nc.Logger = slog.New(slog.DiscardHandler)
	}
	if nc.BlockInterval <= 0 {
		nc.BlockInterval = time.Second
	}
	c := homeConfig(nc.Home)
	var err error
	if nc.P2PListen == "" {
		if nc.P2PListen, err = freeLoopback(); err != nil {
			return nil, err
		}
	}
	if nc.RPCListen == "" {
		if nc.RPCListen, err = freeLoopback(); err != nil {
			return nil, err
		}
	}
	c.P2P.ListenAddress = nc.P2PListen
	c.P2P.PersistentPeers = strings.Join(nc.Peers, ",")
	c.P2P.PexReactor = false
	c.P2P.AddrBookStrict = false
	c.P2P.AllowDuplicateIP = true
	c.P2P.DialTimeout = time.Second
	c.RPC.ListenAddress = nc.RPCListen
	c.Instrumentation.Prometheus = false
	bi := nc.BlockInterval
	c.Consensus.TimeoutCommit = bi
	c.Consensus.TimeoutPropose = 3 * bi
	c.Consensus.TimeoutProposeDelta = bi / 2
	c.Consensus.TimeoutPrevote = bi
	c.Consensus.TimeoutPrevoteDelta = bi / 2
	c.Consensus.TimeoutPrecommit = bi
	c.Consensus.TimeoutPrecommitDelta = bi / 2
	c.Consensus.PeerGossipSleepDuration = min(100*time.Millisecond, bi/4)
	if err := c.ValidateBasic(); err != nil {
		return nil, fmt.Errorf("pki: node config: %w", err)
	}
	for _, f := range []string{c.GenesisFile(), c.PrivValidatorKeyFile(), c.NodeKeyFile()} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("pki: validator home %s is not initialised: %w", nc.Home, err)
		}
	}
	pv, err := loadOrGenFilePV(c)
	if err != nil {
		return nil, err
	}
	nk, err := p2p.LoadNodeKey(c.NodeKeyFile())
	if err != nil {
		return nil, fmt.Errorf("pki: node key: %w", err)
	}
	app, err := OpenApp(filepath.Join(c.DBDir(), appStateFile), nc.Logger.With("part", "app"))
	if err != nil {
		return nil, err
	}
	dbs := &dbTracker{}
	cmt, err := nm.NewNode(ctx, c, pv, nk, proxy.NewLocalClientCreator(app),
		nm.DefaultGenesisDocProviderFunc(c), dbs.provide,
		nm.DefaultMetricsProvider(c.Instrumentation), cmtLogger{nc.Logger.With("part", "cometbft")})
	if err != nil {
		dbs.closeAll()
		app.Close()
		return nil, fmt.Errorf("pki: new node: %w", err)
	}
	if err := cmt.Start(); err != nil {
		dbs.closeAll()
		app.Close()
		return nil, fmt.Errorf("pki: start node: %w", err)
	}
	n := &ValidatorNode{
		cmt: cmt, app: app, dbs: dbs, client: local.New(cmt),
		key: ed25519.PrivateKey(pv.Key.PrivKey.Bytes()),
		rpc: strings.Replace(nc.RPCListen, "tcp://", "http://", 1),
		p2p: string(nk.ID()) + "@" + strings.TrimPrefix(nc.P2PListen, "tcp://"),
		log: nc.Logger,
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	if !nc.NoAttest {
		at := newAttester(n, nc.Attester)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			at.run(actx)
		}()
	}
	// Not in n.wg: Stop waits for n.wg, and this goroutine calls Stop.
	go func() {
		select {
		case <-ctx.Done():
			n.Stop()
		case <-actx.Done():
		}
	}()
	nc.Logger.Info("validator up", "chain", n.ChainID(), "rpc", n.rpc, "p2p", n.p2p, "height", app.lastHeight())
	return n, nil
}

// dbTracker opens CometBFT's databases and closes, when the node stops,
// the ones CometBFT leaves open (the transaction index), so that the home
// can be opened again in the same process.
type dbTracker struct {
	mu  sync.Mutex
	dbs []*onceDB
}

func (t *dbTracker) provide(ctx *cfg.DBContext) (dbm.DB, error) {
	db, err := cfg.DefaultDBProvider(ctx)
	if err != nil {
		return nil, err
	}
	o := &onceDB{DB: db}
	t.mu.Lock()
	t.dbs = append(t.dbs, o)
	t.mu.Unlock()
	return o, nil
}

func (t *dbTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, db := range t.dbs {
		_ = db.Close()
	}
}

// onceDB closes its database once, however often Close is called: pebble
// panics on a second close.
type onceDB struct {
	dbm.DB
	once sync.Once
	err  error
}

func (o *onceDB) Close() error {
	o.once.Do(func() { o.err = o.DB.Close() })
	return o.err
}

// freeLoopback returns a tcp:// address on 127.0.0.1 with a port that was
// free a moment ago.
func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pki: find a free port: %w", err)
	}
	defer l.Close()
	return "tcp://" + l.Addr().String(), nil
}

// Stop stops the attester and CometBFT and closes the application state.
func (n *ValidatorNode) Stop() error {
	n.stopOnce.Do(func() {
		n.cancel()
		if err := n.cmt.Stop(); err != nil {
			n.stopErr = fmt.Errorf("pki: stop node: %w", err)
		}
		n.cmt.Wait()
		n.wg.Wait()
		n.dbs.closeAll()
		if err := n.app.Close(); err != nil && n.stopErr == nil {
			n.stopErr = err
		}
	})
	return n.stopErr
}

// RPC is the node's CometBFT RPC endpoint ("http://127.0.0.1:port").
func (n *ValidatorNode) RPC() string { return n.rpc }

// P2PAddress is the node's persistent-peer entry ("p2pid@127.0.0.1:port").
func (n *ValidatorNode) P2PAddress() string { return n.p2p }

// ChainID is the chain's id.
func (n *ValidatorNode) ChainID() string { return n.cmt.GenesisDoc().ChainID }

// App is the node's application.
func (n *ValidatorNode) App() *App { return n.app }

// Height is the last committed height.
func (n *ValidatorNode) Height() int64 { return n.app.lastHeight() }

// BroadcastTx submits tx through the node's mempool and returns the
// CheckTx verdict (nil when the transaction is in the mempool).
func (n *ValidatorNode) BroadcastTx(ctx context.Context, tx []byte) error {
	res, err := n.client.BroadcastTxSync(ctx, tx)
	if err != nil {
		// CometBFT v1 reports a CheckTx refusal as an error.
		if txe := asTxError(err); txe != err {
			return txe
		}
		return fmt.Errorf("pki: broadcast: %w", err)
	}
	if res.Code != 0 {
		return &TxError{Code: Code(res.Code), Msg: res.Log}
	}
	return nil
}

// TrustRoot returns the height and hash of the chain's latest committed
// block (block 1 on a new chain, once it is committed): the root of trust
// a Verifier starts from. A root is good for the verifier's trust period
// (7 days by default), so operators hand out a recent one, never block 1
// of an old chain.
func (n *ValidatorNode) TrustRoot(ctx context.Context) (int64, []byte, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for n.Height() < 1 {
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-t.C:
		}
	}
	h := n.Height()
	b, err := n.client.Block(ctx, &h)
	if err != nil {
		return 0, nil, fmt.Errorf("pki: block %d: %w", h, err)
	}
	return h, b.BlockID.Hash, nil
}

func (a *App) lastHeight() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last.height
}
