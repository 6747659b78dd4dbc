package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/transport"
)

// LocalChainConfig describes a one-validator PKI chain run in this process,
// as `strata testnet` embeds it.
type LocalChainConfig struct {
	// Home is the validator's directory; a new chain is made there unless
	// it holds one already, which then resumes.
	Home    string
	ChainID string
	Params  pki.Params
	// BlockInterval is the pause after each block; default 1s.
	BlockInterval time.Duration
	// Attester tunes how the validator probes nodes.
	Attester pki.AttesterConfig
	Logger   *slog.Logger
}

// StartLocalChain starts (or resumes) a one-validator chain and returns it
// with the ChainConfig nodes use to reach and trust it: its RPC endpoint
// and the root of trust (block 1).
func StartLocalChain(ctx context.Context, c LocalChainConfig) (*pki.ValidatorNode, ChainConfig, error) {
	keys, err := pki.InitHome(c.Home)
	if err != nil {
		return nil, ChainConfig{}, err
	}
	if _, err := os.Stat(filepath.Join(c.Home, "config", "genesis.json")); errors.Is(err, os.ErrNotExist) {
		g := pki.Genesis{ChainID: c.ChainID, Time: time.Now(), Params: c.Params,
			Validators: []pki.GenesisValidator{{PubKey: keys.ValidatorKey, Power: 10, Name: "v0"}}}
		if err := pki.WriteGenesis(c.Home, g); err != nil {
			return nil, ChainConfig{}, err
		}
	}
	n, err := pki.StartValidator(ctx, pki.ValidatorConfig{
		Home: c.Home, BlockInterval: c.BlockInterval, Attester: c.Attester, Logger: c.Logger,
	})
	if err != nil {
		return nil, ChainConfig{}, err
	}
	h, hash, err := n.TrustRoot(ctx)
	if err != nil {
		n.Stop()
		return nil, ChainConfig{}, fmt.Errorf("node: local chain: %w", err)
	}
	return n, ChainConfig{RPC: n.RPC(), TrustHeight: h, TrustHash: hex.EncodeToString(hash)}, nil
}

// LightDir is the directory, inside a node's or user's data directory,
// where the light client keeps its trusted headers.
const LightDir = "light"

// openVerifier starts the light client of cc with its trusted headers in
// storeDir ("" keeps them in memory). A node whose trust has expired gets
// an error that says what to do.
func openVerifier(ctx context.Context, cc ChainConfig, storeDir string, log *slog.Logger) (*pki.Verifier, error) {
	if err := cc.check(); err != nil {
		return nil, err
	}
	var trust []byte
	if cc.TrustHash != "" {
		h, _ := parseHex32(cc.TrustHash)
		trust = h[:]
	} else if !holdsFiles(storeDir) {
		where := "memory"
		if storeDir != "" {
			where = storeDir
		}
		return nil, fmt.Errorf("node: [chain] needs trust_height and trust_hash: the light client's store (%s) holds no trusted header yet", where)
	}
	v, err := pki.NewVerifier(ctx, pki.VerifierConfig{
		Endpoints: cc.Endpoints(), Witnesses: cc.Witnesses, TrustHeight: cc.TrustHeight, TrustHash: trust,
		TrustPeriod: cc.trustPeriod(), StoreDir: storeDir, Logger: log,
	})
	if errors.Is(err, pki.ErrTrustExpired) {
		// pki's error says why and what to get; this says where to put it.
		return nil, fmt.Errorf("node: chain: %w. A node takes the fresh root as trust_height and trust_hash in [chain]; "+
			"a strata client user with strata client chain --trust-height H --trust-hash X", err)
	}
	if err != nil {
		return nil, fmt.Errorf("node: chain: %w", err)
	}
	return v, nil
}

// holdsFiles reports whether dir exists and is not empty.
func holdsFiles(dir string) bool {
	if dir == "" {
		return false
	}
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) > 0
}

// FollowChain verifies the chain's topology documents with a light client
// whose trusted headers are kept in storeDir ("" keeps them in memory) and
// keeps the current and next epochs' in the returned cache, refreshed
// every interval (default 1s) until ctx ends; done is closed once the
// light client's store is closed after that (a process that opens the
// same store again waits for it). Clients read their topology from the
// cache. An endpoint going down and a refresh failing are each logged
// once (WARN, by pki.Verifier and pki.TopologyCache) and their recovery
// once (INFO).
func FollowChain(ctx context.Context, cc ChainConfig, storeDir string, interval time.Duration, log *slog.Logger) (cache *pki.TopologyCache, done <-chan struct{}, err error) {
	if interval <= 0 {
		interval = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v, err := openVerifier(ctx, cc, storeDir, log)
	if err != nil {
		return nil, nil, err
	}
	cache = pki.NewTopologyCache(v)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = cache.Run(ctx, interval)
		if err := v.Close(); err != nil {
			log.Warn("closing the light client's store", "err", err)
		}
	}()
	return cache, closed, nil
}

// PeerOf returns how to reach a node of a topology.
func PeerOf(n pki.NodeInfo) transport.PeerInfo {
	return transport.PeerInfo{PublicKey: n.IdentityKey[:], Addrs: n.Addrs}
}
