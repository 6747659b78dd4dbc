package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newTestnetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "testnet",
		Short: "Run a local testnet: validator, relays, mailboxes and clients on loopback",
		Long: `testnet will start an embedded single-validator chain, 9 relays in 3 strata,
2 mailbox nodes and 2 demo clients exchanging messages, with a live summary
and a web dashboard. It is not built yet: the Sphinx packet library is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("testnet: not yet — the relay, PKI, client and mailbox layers come first (see README.md)")
		},
	}
}
