package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/strata-mix/strata/sim"
)

func newSimCmd() *cobra.Command {
	base := sim.DefaultConfig()
	var (
		topologies = []string{"restricted", "mesh"}
		delays     = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond}
		csvPath    = "sim.csv"
		plotPath   = "sim.svg"
		quiet      bool
	)
	base.Duration = 2 * time.Minute
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a Strata network and measure its anonymity, latency and overhead",
		Long: `sim runs a discrete-event simulation of a Strata network: Loopix clients
(payload, loop and drop streams), relays sorted into strata with restricted
routes or a full mesh, per-hop delays drawn by the Sphinx delay rule,
optional corrupt relays, and a global passive adversary who sees every link.

For each topology and each mean per-hop delay it measures, over target real
messages, the Shannon entropy of the adversary's belief about which message
leaving the last stratum is the target (the Loopix paper's metric), the
end-to-end latency of real messages, and the cover traffic sent per real
message. Every run uses the same traffic, so the topologies compare at
equal bandwidth.

It prints a table, writes one CSV row per run and plots entropy against the
mean delay (SVG or PNG, by the file's extension). Runs are deterministic
for a given --seed. See docs/sim.md for the model and the algorithm.

Every parameter is checked before anything runs: negative rates, k larger
than a stratum, zero relays or a duration too short for the delays fail at
once.`,
		Example: `  strata sim
  strata sim --delays 20ms,50ms,100ms --topologies restricted --plot entropy.png
  strata sim --clients 1000 --relays 30 --k 4 --corrupt 0.1 --duration 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sweep := sim.Sweep{Base: base, Delays: delays}
			for _, name := range topologies {
				t, err := sim.ParseTopology(name)
				if err != nil {
					return err
				}
				sweep.Topologies = append(sweep.Topologies, t)
			}
			if _, err := sweep.Configs(); err != nil {
				return err
			}
			if err := checkOutput(csvPath, false); err != nil {
				return err
			}
			if err := checkOutput(plotPath, true); err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if !quiet {
				bar = progressbar.NewOptions64(int64(len(topologies)*len(delays))*int64(base.Duration/time.Millisecond),
					progressbar.OptionSetWriter(cmd.ErrOrStderr()),
					progressbar.OptionSetDescription("simulating"),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionSetElapsedTime(true),
					progressbar.OptionThrottle(200*time.Millisecond),
					progressbar.OptionSetWidth(30),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }),
				)
				sweep.Progress = func(done, _ time.Duration) { _ = bar.Set64(int64(done / time.Millisecond)) }
			}
			points, err := sweep.Run(cmd.Context())
			if err != nil {
				return err
			}
			if bar != nil {
				_ = bar.Finish()
			}
			printPoints(cmd.OutOrStdout(), points)
			if csvPath != "" {
				var buf bytes.Buffer
				if err := sim.WriteCSV(&buf, points); err != nil {
					return err
				}
				if err := os.WriteFile(csvPath, buf.Bytes(), 0o644); err != nil {
					return fmt.Errorf("sim: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", csvPath)
			}
			if plotPath != "" {
				if err := sim.SavePlot(plotPath, points); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", plotPath)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&base.Clients, "clients", base.Clients, "number of Loopix clients")
	f.IntVar(&base.Relays, "relays", base.Relays, "number of mix relays, cut into --layers strata")
	f.IntVar(&base.Layers, "layers", base.Layers, "number of strata a packet crosses")
	f.IntVar(&base.Successors, "k", base.Successors, "successors of each relay under restricted routes (at most a stratum's size)")
	f.StringSliceVar(&topologies, "topologies", topologies, "topologies to run: restricted (k-successor routes), mesh (every relay links to the whole next stratum)")
	f.DurationSliceVar(&delays, "delays", delays, "mean per-hop delays to sweep")
	f.DurationVar(&base.Delay.Max, "delay-cap", 0, "cap on a hop's delay (0 = 10 × the mean, the Sphinx default)")
	f.Float64Var(&base.LambdaP, "lambda-p", base.LambdaP, "each client's payload rate λP (packets/s): real messages, or cover when none is queued")
	f.Float64Var(&base.LambdaL, "lambda-l", base.LambdaL, "each client's loop cover rate λL (packets/s)")
	f.Float64Var(&base.LambdaD, "lambda-d", base.LambdaD, "each client's drop cover rate λD (packets/s)")
	f.Float64Var(&base.LambdaM, "lambda-m", base.LambdaM, "each relay's loop cover rate λM (packets/s)")
	f.Float64Var(&base.LambdaR, "lambda-r", base.LambdaR, "rate at which each client's user queues real messages (messages/s, below λP)")
	f.Float64Var(&base.Corrupt, "corrupt", base.Corrupt, "fraction of relays, chosen at random, that the adversary controls, 0 to 1 (default 0: all honest)")
	f.DurationVar(&base.Duration, "duration", base.Duration, "simulated time of each run")
	f.DurationVar(&base.Warmup, "warmup", 0, "simulated time before measuring (0 = 20 × layers × mean delay + 5/λP)")
	f.IntVar(&base.Targets, "targets", base.Targets, "target messages whose entropy each run measures")
	f.Uint64Var(&base.Seed, "seed", base.Seed, "seed of every random choice; the same flags give the same results")
	f.StringVar(&csvPath, "csv", csvPath, `CSV file to write, one row per run ("" to skip)`)
	f.StringVar(&plotPath, "plot", plotPath, `plot of entropy against mean delay, .svg or .png ("" to skip)`)
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// checkOutput fails early when an output file cannot be written: its
// directory is missing, or a plot's extension is not one we draw.
func checkOutput(path string, plot bool) error {
	if path == "" {
		return nil
	}
	if plot {
		if _, err := sim.PlotFormat(path); err != nil {
			return err
		}
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("sim: cannot write %s: directory %s does not exist", path, dir)
	}
	return nil
}

// printPoints writes the table of results.
func printPoints(w io.Writer, points []sim.Point) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "topology\tk\tmean delay\tentropy (bits)\t±sd\tp5\tlatency p50\tp99\tmix p99\tcover/real\ttargets\tevents/s\t")
	for _, p := range points {
		r := p.Result
		fmt.Fprintf(tw, "%s\t%d\t%v\t%.2f\t%.2f\t%.2f\t%v\t%v\t%v\t%.2f\t%d\t%.3g\t\n",
			p.Topology, r.K, p.MeanDelay, r.Entropy.Mean, r.Entropy.StdDev, r.Entropy.P5,
			r.Latency.P50.Round(time.Millisecond), r.Latency.P99.Round(time.Millisecond), r.MixLatency.P99.Round(time.Millisecond),
			r.Packets.CoverPerReal(), r.Entropy.N, r.EventsPerSecond())
	}
	tw.Flush()
}
