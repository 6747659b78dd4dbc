package main

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-mix/strata/pki"
)

func newValidatorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validator",
		Short: "Run a validator of the relay PKI chain (CometBFT)",
		Long: `A validator runs the relay PKI: a CometBFT node with the Strata application
in the same process. It registers relays and mailboxes, probes them over libp2p
and attests the ones that answer, and publishes each epoch's topology: strata
drawn by VRF, restricted routes, mix keys and network parameters.

  strata validator init --home DIR            one-validator chain (what testnet embeds)
  strata validator start --home DIR           run it; prints the RPC address and trust root

A chain of several validators: run "init" in each home with --no-genesis,
collect the keys that "show" prints, run "init --validator KEY ..." in one
home and copy its config/genesis.json to the others, then start each with
--peer entries for the others.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newValidatorInitCmd(), newValidatorStartCmd(), newValidatorShowCmd())
	return cmd
}

func defaultHome() string {
	dir, err := os.UserHomeDir()
	if err != nil {
		return ".strata-validator"
	}
	return filepath.Join(dir, ".strata", "validator")
}

func newValidatorInitCmd() *cobra.Command {
	var (
		home, chainID string
		testnet       bool
		noGenesis     bool
		others        []string
		p             = pki.DefaultParams()
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a validator home: keys and, unless --no-genesis, a genesis document",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := pki.InitHome(home)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "home %s\nvalidator key %s\np2p id %s\n", home, hex.EncodeToString(keys.ValidatorKey), keys.P2PID)
			if noGenesis {
				return nil
			}
			genesis := filepath.Join(home, "config", "genesis.json")
			if _, err := os.Stat(genesis); err == nil {
				return fmt.Errorf("validator init: %s exists; remove it to make a new chain", genesis)
			}
			if testnet {
				p = testnetParams(cmd, p)
			}
			vals := []pki.GenesisValidator{{PubKey: keys.ValidatorKey, Power: 10, Name: "v0"}}
			for i, o := range others {
				k, err := hex.DecodeString(o)
				if err != nil || len(k) != 32 {
					return fmt.Errorf("validator init: --validator %q is not 64 hex digits", o)
				}
				vals = append(vals, pki.GenesisValidator{PubKey: k, Power: 10, Name: fmt.Sprintf("v%d", i+1)})
			}
			if err := pki.WriteGenesis(home, pki.Genesis{ChainID: chainID, Time: time.Now(), Params: p, Validators: vals}); err != nil {
				return err
			}
			fmt.Fprintf(w, "genesis %s: chain %s, %d validators, epochs of %d blocks, %d layers, k = %d\n", genesis, chainID, len(vals), p.EpochBlocks, p.Layers, p.Successors)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&home, "home", defaultHome(), "validator home directory")
	f.StringVar(&chainID, "chain-id", "strata-local", "chain id of a new chain")
	f.BoolVar(&testnet, "testnet", false, "testnet parameters: 60-block epochs, 12-bit proof of work, private addresses allowed (explicit flags win)")
	f.BoolVar(&noGenesis, "no-genesis", false, "create only the keys (for a validator of a chain whose genesis comes from elsewhere)")
	f.StringSliceVar(&others, "validator", nil, "consensus key (hex) of another genesis validator; repeatable")
	f.Uint64Var(&p.EpochBlocks, "epoch-blocks", p.EpochBlocks, "epoch length in blocks")
	f.Uint64Var(&p.TopologyLead, "topology-lead", p.TopologyLead, "blocks before an epoch ends at which the next topology freezes")
	f.Uint32Var(&p.Layers, "layers", p.Layers, "number of strata")
	f.Uint32Var(&p.Successors, "k", p.Successors, "successors of each relay in the next layer")
	f.Uint32Var(&p.PowBits, "pow-bits", p.PowBits, "proof-of-work bits of an intention")
	f.Uint64Var(&p.KeysAhead, "keys-ahead", p.KeysAhead, "epochs ahead a node may publish mix keys")
	f.Uint64Var(&p.DropAfter, "drop-after", p.DropAfter, "epochs without a quorum of attestations before a node is dropped")
	f.Uint64Var(&p.PendingEpochs, "pending-epochs", p.PendingEpochs, "epochs an intention waits for admission")
	f.Uint32Var(&p.MaxPendingPerEpoch, "max-pending", p.MaxPendingPerEpoch, "intentions the chain accepts per epoch")
	f.Uint32Var(&p.PowStep, "pow-step", p.PowStep, "intentions accepted in an epoch per extra proof-of-work bit (0: fixed difficulty)")
	f.BoolVar(&p.PublicAddrsOnly, "public-addrs-only", p.PublicAddrsOnly, "refuse intentions naming loopback, private or link-local addresses (--testnet turns it off)")
	f.Float64Var(&p.LambdaP, "lambda-p", p.LambdaP, "clients' Loopix payload rate (packets/s)")
	f.Float64Var(&p.LambdaL, "lambda-l", p.LambdaL, "clients' Loopix loop rate (packets/s)")
	f.Float64Var(&p.LambdaD, "lambda-d", p.LambdaD, "clients' Loopix drop rate (packets/s)")
	f.Float64Var(&p.LambdaM, "lambda-m", p.LambdaM, "relays' Loopix loop rate (packets/s)")
	f.DurationVar(&p.MeanDelay, "mean-delay", p.MeanDelay, "mean per-hop Sphinx delay")
	return cmd
}

// testnetParams sets the testnet defaults for the parameters the command
// line left alone.
func testnetParams(cmd *cobra.Command, p pki.Params) pki.Params {
	set := func(name string) bool { return cmd.Flags().Changed(name) }
	if !set("epoch-blocks") {
		p.EpochBlocks = 60
	}
	if !set("topology-lead") {
		p.TopologyLead = p.EpochBlocks / 4
	}
	if !set("pow-bits") {
		p.PowBits = 12
	}
	if !set("public-addrs-only") {
		p.PublicAddrsOnly = false
	}
	return p
}

func newValidatorStartCmd() *cobra.Command {
	var (
		home, p2p, rpc, level string
		peers                 []string
		interval              time.Duration
	)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run the validator until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return fmt.Errorf("validator start: --log-level %q", level)
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
			ctx := cmd.Context()
			n, err := pki.StartValidator(ctx, pki.ValidatorConfig{
				Home: home, P2PListen: p2p, RPCListen: rpc, Peers: peers,
				BlockInterval: interval, Logger: logger,
			})
			if err != nil {
				return err
			}
			defer n.Stop()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "chain %s\nrpc %s\np2p %s\n", n.ChainID(), n.RPC(), n.P2PAddress())
			h, hash, err := n.TrustRoot(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return n.Stop()
				}
				return err
			}
			fmt.Fprintf(w, "trust root: height %d hash %X\n", h, hash)
			<-ctx.Done()
			return n.Stop()
		},
	}
	f := cmd.Flags()
	f.StringVar(&home, "home", defaultHome(), "validator home directory (see init)")
	f.StringVar(&p2p, "p2p", "tcp://127.0.0.1:26656", "CometBFT p2p listen address")
	f.StringVar(&rpc, "rpc", "tcp://127.0.0.1:26657", "CometBFT RPC listen address")
	f.StringSliceVar(&peers, "peer", nil, "another validator as p2pid@host:port; repeatable")
	f.DurationVar(&interval, "block-interval", time.Second, "pause after each block")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func newValidatorShowCmd() *cobra.Command {
	var home string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the consensus key and p2p id of a validator home",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Stat(filepath.Join(home, "config", "priv_validator_key.json")); err != nil {
				return fmt.Errorf("validator show: %s has no validator key (run validator init)", home)
			}
			keys, err := pki.InitHome(home)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "validator key %s\np2p id %s\n", hex.EncodeToString(keys.ValidatorKey), keys.P2PID)
			return nil
		},
	}
	cmd.Flags().StringVar(&home, "home", defaultHome(), "validator home directory")
	return cmd
}
