package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-mix/strata/node"
)

func newKeygenCmd() *cobra.Command {
	var identity, dataDir, epochs string
	var addrs []string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make a node's identity key and mix keys; print its topology entry",
		Long: `keygen creates the Ed25519 identity key file (or reuses it if it exists) and,
with --data-dir, the X25519 mix keys for the given epochs, then prints the
node's entry for a topology file as JSON: its identity key, addresses and
mix public keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			first, last, err := parseEpochs(epochs)
			if err != nil {
				return err
			}
			entry, err := node.Keygen(identity, dataDir, first, last, addrs)
			if err != nil {
				return err
			}
			out, _ := json.MarshalIndent(entry, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return nil
		},
	}
	cmd.Flags().StringVar(&identity, "identity", "identity.key", "identity key file (created if missing, mode 0600)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "node data directory for mix keys (none: identity only)")
	cmd.Flags().StringVar(&epochs, "epochs", "1", "mix key epochs: N or FIRST-LAST")
	cmd.Flags().StringSliceVar(&addrs, "addr", nil, "listen multiaddr to put in the entry (repeatable)")
	return cmd
}

// parseEpochs parses "N" or "FIRST-LAST".
func parseEpochs(s string) (uint64, uint64, error) {
	a, b, isRange := strings.Cut(s, "-")
	first, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("--epochs %q: want N or FIRST-LAST", s)
	}
	if !isRange {
		return first, first, nil
	}
	last, err := strconv.ParseUint(b, 10, 64)
	if err != nil || last < first {
		return 0, 0, fmt.Errorf("--epochs %q: want N or FIRST-LAST with FIRST ≤ LAST", s)
	}
	return first, last, nil
}
