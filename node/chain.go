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
