package testnet

import (
	"context"
	"fmt"
	"io"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// maxScrape bounds a /metrics answer the dashboard reads.
const maxScrape = 4 << 20

// Sample is what the dashboard reads off one node's /metrics: sums over
// every label set of the counters it shows.
type Sample struct {
	PacketsIn, PacketsOut, ReplayDrops float64
}

// scrape reads a node's Prometheus endpoint. The dashboard learns about
// nodes the way an operator's Prometheus would, so it shows only what a
// node exports.
func scrape(ctx context.Context, c *http.Client, url string) (Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Sample{}, fmt.Errorf("testnet: scrape %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	res, err := c.Do(req)
	if err != nil {
		return Sample{}, fmt.Errorf("testnet: scrape: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return Sample{}, fmt.Errorf("testnet: scrape %s: %s", url, res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(res.Body, maxScrape))
	if err != nil {
		return Sample{}, fmt.Errorf("testnet: scrape %s: %w", url, err)
	}
	return Sample{
		PacketsIn:   sum(fams["strata_relay_packets_in_total"], nil),
		PacketsOut:  sum(fams["strata_relay_packets_out_total"], nil),
		ReplayDrops: sum(fams["strata_relay_packets_dropped_total"], map[string]string{"reason": "replay"}),
	}, nil
}

// sum adds the values of fam's counters and gauges whose labels include
// every pair of match.
func sum(fam *dto.MetricFamily, match map[string]string) float64 {
	if fam == nil {
		return 0
	}
	var total float64
next:
	for _, m := range fam.GetMetric() {
		for k, v := range match {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
					break
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}
