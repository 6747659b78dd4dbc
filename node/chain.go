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

// FollowChain verifies the chain's topology documents with a light client
// and keeps the current and next epochs' in the returned cache, refreshed
// every interval (default 1s) until ctx ends. Clients read their topology
// from it.
func FollowChain(ctx context.Context, cc ChainConfig, interval time.Duration, log *slog.Logger) (*pki.TopologyCache, error) {
	if err := cc.check(); err != nil {
		return nil, err
	}
	if interval <= 0 {
		interval = time.Second
	}
	trust, _ := parseHex32(cc.TrustHash)
	v, err := pki.NewVerifier(ctx, pki.VerifierConfig{
		Primary: cc.RPC, Witnesses: cc.Witnesses, TrustHeight: cc.TrustHeight, TrustHash: trust[:], Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: chain: %w", err)
	}
	cache := pki.NewTopologyCache(v)
	go func() { _ = cache.Run(ctx, interval) }()
	return cache, nil
}

// PeerOf returns how to reach a node of a topology.
func PeerOf(n pki.NodeInfo) transport.PeerInfo {
	return transport.PeerInfo{PublicKey: n.IdentityKey[:], Addrs: n.Addrs}
}
