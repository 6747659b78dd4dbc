package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-mix/strata/node"
)

// newClientChainCmd is `strata client chain`: show or change the chain
// RPC endpoints (and, when asked, the root of trust) of an existing user.
func newClientChainCmd(o *clientOpts) *cobra.Command {
	var set, add, remove []string
	var trustHash string
	var trustHeight int64
	cmd := &cobra.Command{
		Use:   "chain",
		Short: "Show or change the chain RPC endpoints a user reads through",
		Long: `chain prints the user's chain RPC endpoints and root of trust, or changes
them: --set replaces the endpoints, --add appends endpoints, --remove drops
some (each takes a comma-separated list or may be repeated). The root of
trust and the light client's store of verified headers are kept, so the user
goes on verifying from the last header it verified: an endpoint can only
serve the chain the user already trusts. --trust-height with --trust-hash
replaces the root of trust (after the stored one expired: a user offline for
longer than the trust period, 7 days). Run it while the user is not running.`,
		Example: `  strata client chain --data-dir alice
  strata client chain --data-dir alice --add http://10.0.0.2:26657
  strata client chain --data-dir alice --set http://a:26657,http://b:26657`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dataDir == "" {
				return errors.New("client chain: --data-dir is empty")
			}
			if !node.ChatInitialized(o.dataDir) {
				return fmt.Errorf("client chain: %s holds no user: run strata client init first", o.dataDir)
			}
			newRoot := cmd.Flags().Changed("trust-hash") || cmd.Flags().Changed("trust-height")
			if newRoot && (trustHash == "" || trustHeight <= 0) {
				return errors.New("client chain: a new root of trust needs both --trust-height and --trust-hash")
			}
			if len(set) == 0 && len(add) == 0 && len(remove) == 0 && !newRoot {
				cc, err := node.ChatChain(o.dataDir)
				if err != nil {
					return err
				}
				printChain(cmd.OutOrStdout(), cc)
				return nil
			}
			cc, err := node.SetChatChain(o.dataDir, func(c *node.ChainConfig) error {
				eps := c.Endpoints()
				if cmd.Flags().Changed("set") {
					eps = nil
					for _, e := range set {
						if !slices.Contains(eps, e) {
							eps = append(eps, e)
						}
					}
				}
				for _, e := range add {
					if !slices.Contains(eps, e) {
						eps = append(eps, e)
					}
				}
				for _, e := range remove {
					i := slices.Index(eps, e)
					if i < 0 {
						return fmt.Errorf("client chain: --remove %s: not an endpoint of this user", e)
					}
					eps = slices.Delete(eps, i, i+1)
				}
				if len(eps) == 0 {
					return errors.New("client chain: that leaves no endpoint")
				}
				c.RPC, c.RPCs = "", eps
				if newRoot {
					c.TrustHeight, c.TrustHash = trustHeight, strings.ToLower(trustHash)
				}
				return nil
			})
			if err != nil {
				return err
			}
			printChain(cmd.OutOrStdout(), cc)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&set, "set", nil, "replace the endpoints with these")
	f.StringSliceVar(&add, "add", nil, "append these endpoints")
	f.StringSliceVar(&remove, "remove", nil, "drop these endpoints")
	f.Int64Var(&trustHeight, "trust-height", 0, "a new root of trust: height (with --trust-hash)")
	f.StringVar(&trustHash, "trust-hash", "", "a new root of trust: block hash, 64 hex digits (with --trust-height)")
	return cmd
}

func printChain(w io.Writer, cc node.ChainConfig) {
	for i, e := range cc.Endpoints() {
		fmt.Fprintf(w, "endpoint %d\t%s\n", i+1, e)
	}
	for _, e := range cc.Witnesses {
		fmt.Fprintf(w, "witness\t%s\n", e)
	}
	fmt.Fprintf(w, "trust root\theight %d hash %s\n", cc.TrustHeight, cc.TrustHash)
}
