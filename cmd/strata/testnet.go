package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-mix/strata/testnet"
)

func newTestnetCmd() *cobra.Command {
	var (
		cfg      testnet.Config
		dataDir  string
		keep     bool
		every    time.Duration
		logLevel string
		logFile  string
		duration time.Duration
	)
	cmd := &cobra.Command{
		Use:   "testnet",
		Short: "Run a local testnet: validator, relays, mailboxes and clients on loopback",
		Long: `testnet runs a whole Strata network on this machine, on loopback, with real
libp2p connections and real on-disk state: an embedded single-validator
CometBFT chain running the relay PKI, relays that register, are probed,
admitted and sorted into 3 strata by VRF, mailbox nodes, and demo clients that
exchange end-to-end encrypted messages through the strata and each other's
mailboxes, with Loopix cover traffic all along.

It prints its progress while the network comes up, then a live summary
(epoch, messages sent and delivered, latency p50/p99, loss) every few
seconds, and serves a web dashboard (strata and routes, per-node packet
rates, latency histogram, a box to send a message). Every node serves
Prometheus metrics; the addresses are printed. Ctrl-C stops everything.`,
		Example: `  strata testnet
  strata testnet --relays 12 --mean-delay 20ms --dashboard 127.0.0.1:8080
  strata testnet --data-dir ./net --keep --log-level debug --log-file net.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("testnet: --log-level %q: want debug, info, warn or error", logLevel)
			}
			out := cmd.OutOrStdout()
			logw := io.Discard
			if logFile != "" {
				f, err := os.Create(logFile)
				if err != nil {
					return fmt.Errorf("testnet: %w", err)
				}
				defer f.Close()
				logw = f
			}
			cfg.Logger = slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: lv}))
			if dataDir == "" {
				d, err := os.MkdirTemp("", "strata-testnet-")
				if err != nil {
					return fmt.Errorf("testnet: %w", err)
				}
				dataDir = d
				if !keep {
					defer os.RemoveAll(d)
				}
			} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return fmt.Errorf("testnet: %w", err)
			}
			cfg.DataDir, _ = filepath.Abs(dataDir)
			cfg.MessageEvery = every
			cfg.Progress = out
			fmt.Fprintf(out, "strata testnet: data in %s%s\n", cfg.DataDir, map[bool]string{true: " (kept)", false: " (removed on exit; --keep keeps it)"}[keep || cmd.Flags().Changed("data-dir")])
			ctx := cmd.Context()
			start := time.Now()
			net, err := testnet.Start(ctx, cfg)
			if err != nil {
				return err
			}
			defer func() {
				fmt.Fprintln(out, "stopping…")
				if err := net.Close(); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "testnet: stopping:", err)
				}
			}()
			fmt.Fprintf(out, "network up in %.1fs. Chain RPC %s\n", time.Since(start).Seconds(), net.RPC())
			cc := net.Chain()
			fmt.Fprintf(out, "chat users: strata client init --data-dir DIR --name NAME --chain %s --trust-height %d --trust-hash %s (then strata chat --data-dir DIR)\n", net.RPC(), cc.TrustHeight, cc.TrustHash)
			metrics := net.Metrics()
			names := make([]string, 0, len(metrics))
			for n := range metrics {
				names = append(names, n)
			}
			slices.Sort(names)
			fmt.Fprintln(out, "Prometheus metrics:")
			for _, n := range names {
				fmt.Fprintf(out, "  %-10s %s\n", n, metrics[n])
			}
			if u := net.DashboardURL(); u != "" {
				fmt.Fprintf(out, "dashboard: %s\n", u)
			}
			fmt.Fprintln(out, "Ctrl-C to stop.")
			tick := time.NewTicker(5 * time.Second)
			defer tick.Stop()
			var stop <-chan time.Time
			if duration > 0 {
				stop = time.After(duration)
			}
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-stop:
					return nil
				case <-tick.C:
					fmt.Fprintln(out, summary(net))
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "directory for all node state (default: a new temporary directory)")
	f.BoolVar(&keep, "keep", false, "keep the temporary data directory on exit")
	f.IntVar(&cfg.Relays, "relays", 9, "number of relays (cut into 3 strata)")
	f.IntVar(&cfg.Mailboxes, "mailboxes", 2, "number of mailbox nodes")
	f.IntVar(&cfg.Clients, "clients", 2, "number of demo clients")
	f.DurationVar(&cfg.MeanDelay, "mean-delay", 50*time.Millisecond, "mean per-hop mix delay")
	f.Float64Var(&cfg.LambdaP, "lambda-p", 10, "clients' payload rate λP, packets/s (0: the chain default, 2); the queue's repair rounds need slots, and at 10/s a slot waits 0.1 s on average")
	f.Float64Var(&cfg.LambdaL, "lambda-l", 0, "clients' loop rate λL, packets/s (0: default 0.5)")
	f.Float64Var(&cfg.LambdaD, "lambda-d", 0, "clients' drop rate λD, packets/s (0: default 0.5)")
	f.Float64Var(&cfg.LambdaM, "lambda-m", 0, "relays' loop rate λM, packets/s (0: default 0.5)")
	f.Float64Var(&cfg.Loss, "loss", 0, "fraction of packets every relay drops on purpose (e.g. 0.2), to watch delivery through loss")
	f.Uint64Var(&cfg.EpochBlocks, "epoch-blocks", 120, "epoch length in blocks")
	f.DurationVar(&cfg.BlockInterval, "block-interval", 500*time.Millisecond, "time between blocks")
	f.DurationVar(&every, "message-every", 3*time.Second, "mean time between demo messages of each client (0: only the dashboard's)")
	f.StringVar(&cfg.Dashboard, "dashboard", "127.0.0.1:8080", `dashboard listen address ("" for none)`)
	f.StringVar(&logLevel, "log-level", "info", "log level of the nodes' logs: debug, info, warn, error")
	f.StringVar(&logFile, "log-file", "", "write the nodes' logs to this file (default: discarded)")
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	return cmd
}

// summary is the live status line.
func summary(n *testnet.Testnet) string {
	st := n.State()
	c := st.Messages
	up, total := 0, 0
	for _, l := range st.Layers {
		for _, r := range l {
			total++
			if r.Up {
				up++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%5.0fs] height %d epoch %d | relays up %d/%d | messages sent %d delivered %d lost %d",
		st.Uptime, st.Height, st.Epoch, up, total, c.Sent, c.Delivered, c.Lost)
	if c.Delivered > 0 {
		fmt.Fprintf(&b, " | latency p50 %v p99 %v", seconds(c.P50), seconds(c.P99))
	}
	return b.String()
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}
