package main

import (
	"github.com/spf13/cobra"
)

// newRootCmd builds the command tree. Commands are built afresh for every
// run, so tests can execute them side by side.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "strata",
		Short: "Strata: a stratified mixnet with messaging on top",
		Long: `Strata is a mix network for private messaging: clients send fixed-size
Sphinx packets through three strata of mix relays to store-and-forward
mailboxes, with Loopix cover traffic, a relay PKI on CometBFT and MLS groups.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		// A RunE makes cobra reject unknown subcommands instead of
		// printing help and succeeding.
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.AddCommand(newVersionCmd(), newTestnetCmd(), newClientCmd(), newChatCmd(), newKeygenCmd(), newRelayCmd(), newMailboxCmd(), newValidatorCmd(), newSimCmd())
	return root
}
