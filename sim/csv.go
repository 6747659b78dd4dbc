package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

// csvHeader names the columns WriteCSV writes. Durations are in
// milliseconds, entropies in bits, bandwidths in bytes per second.
var csvHeader = []string{
	"topology", "k", "mean_delay_ms", "clients", "relays", "layers",
	"lambda_p", "lambda_l", "lambda_d", "lambda_m", "lambda_r", "corrupt_relays", "seed",
	"targets", "targets_unfinished", "entropy_mean", "entropy_sd", "entropy_min", "entropy_p5", "entropy_p50", "entropy_p95",
	"latency_mean_ms", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_max_ms",
	"mix_latency_mean_ms", "mix_latency_p99_ms",
	"real_packets", "cover_packets", "cover_per_real", "client_bytes_per_s", "link_bytes_per_real",
	"events", "wall_s",
}

// WriteCSV writes one row per point, after a header row.
func WriteCSV(w io.Writer, points []Point) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return fmt.Errorf("sim: csv: %w", err)
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	ms := func(d time.Duration) string { return f(float64(d) / float64(time.Millisecond)) }
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	for _, p := range points {
		r, c := p.Result, p.Result.Config
		row := []string{
			p.Topology.String(), i(int64(r.K)), ms(p.MeanDelay), i(int64(c.Clients)), i(int64(c.Relays)), i(int64(c.Layers)),
			f(c.LambdaP), f(c.LambdaL), f(c.LambdaD), f(c.LambdaM), f(c.LambdaR), i(int64(r.Corrupt)), strconv.FormatUint(c.Seed, 10),
			i(int64(r.Targets)), i(int64(r.TargetsUnfinished)),
			f(r.Entropy.Mean), f(r.Entropy.StdDev), f(r.Entropy.Min), f(r.Entropy.P5), f(r.Entropy.P50), f(r.Entropy.P95),
			ms(r.Latency.Mean), ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99), ms(r.Latency.Max),
			ms(r.MixLatency.Mean), ms(r.MixLatency.P99),
			i(r.Packets.Real), i(r.Packets.Cover()), f(r.Packets.CoverPerReal()), f(r.ClientBandwidth()), f(r.LinkBytesPerReal()),
			i(r.Events), f(r.Wall.Seconds()),
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("sim: csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("sim: csv: %w", err)
	}
	return nil
}
