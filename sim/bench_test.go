package sim

import (
	"context"
	"testing"
	"time"
)

// BenchmarkRun simulates the scale target — 10,000 clients and 100
// relays in 3 strata with restricted routes, default Loopix rates, 50 ms
// mean per-hop delay — for one simulated minute per iteration, and reports
// events per second of wall time and the wall time ten simulated minutes
// would take (the target is under one minute).
func BenchmarkRun(b *testing.B) {
	c := DefaultConfig()
	c.Clients, c.Relays = 10000, 100
	c.Delay.Mean = 50 * time.Millisecond
	c.Duration = time.Minute
	if err := c.Validate(); err != nil {
		b.Fatal(err)
	}
	var events int64
	var wall time.Duration
	b.ReportAllocs()
	for b.Loop() {
		res, err := Run(context.Background(), c)
		if err != nil {
			b.Fatal(err)
		}
		events += res.Events
		wall += res.Wall
	}
	b.ReportMetric(float64(events)/wall.Seconds(), "events/s")
	b.ReportMetric(wall.Seconds()/float64(b.N)*10, "s/10-sim-min")
}
