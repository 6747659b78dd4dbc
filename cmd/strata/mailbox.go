package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/strata-mix/strata/node"
)

func newMailboxCmd() *cobra.Command {
	var (
		config   string
		announce []string
	)
	cmd := &cobra.Command{
		Use:   "mailbox",
		Short: "Run a mailbox node",
		Long: `mailbox runs a store-and-forward mailbox node from a TOML config file (see
docs/mailbox.md): it registers in the PKI chain as a mailbox, receives the
requests clients send it through the strata, stores messages (fsynced before
they are acknowledged) and pushes them to each mailbox's owner through the
SURBs the owner stocked. SIGINT or SIGTERM stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := node.LoadMailboxConfig(config)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("announce") {
				if cfg, err = cfg.WithAnnounce(announce); err != nil {
					return err
				}
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			return node.RunMailbox(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&config, "config", "mailbox.toml", "mailbox node config file")
	cmd.Flags().StringSliceVar(&announce, "announce", nil, "multiaddrs to register in the PKI instead of the config's announce (repeat or separate by commas)")
	return cmd
}
