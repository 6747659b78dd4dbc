package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/strata-mix/strata/node"
)

func newRelayCmd() *cobra.Command {
	var (
		config   string
		announce []string
	)
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run a mix relay",
		Long: `relay runs a mix relay from a TOML config file (see docs/relay.md): it
listens on libp2p, unwraps, replay-checks, delays and forwards Sphinx
packets, sends loop cover traffic, serves Prometheus metrics, and follows
its epochs — strata, peers and mix keys — from the PKI chain (a [chain]
section) or from a static topology file. SIGINT or SIGTERM stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := node.LoadRelayConfig(config)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("announce") {
				if cfg, err = cfg.WithAnnounce(announce); err != nil {
					return err
				}
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			return node.RunRelay(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&config, "config", "relay.toml", "relay config file")
	cmd.Flags().StringSliceVar(&announce, "announce", nil, "multiaddrs to register in the PKI instead of the config's announce (repeat or separate by commas)")
	return cmd
}
