package sim

import (
	"context"
	"fmt"
	"time"
)

// Sweep runs the same network at several mean per-hop delays and
// topologies, with equal traffic everywhere: the experiment behind the
// entropy-versus-delay plot.
type Sweep struct {
	// Base is the network; its Delay.Mean and Topology are overridden.
	// Delay.Max is kept, so zero keeps the cap at 10 × each mean.
	Base Config
	// Delays are the mean per-hop delays to run.
	Delays []time.Duration
	// Topologies are the topologies to run at each delay.
	Topologies []Topology
	// Progress, if set, is called from time to time with the simulated
	// time done over all runs and their total.
	Progress func(done, total time.Duration)
}

// Point is one run of a sweep.
type Point struct {
	Topology  Topology
	MeanDelay time.Duration
	Result    *Result
}

// Configs returns the configuration of every run, topology-major, or the
// first reason one of them cannot run.
func (s Sweep) Configs() ([]Config, error) {
	if len(s.Delays) == 0 || len(s.Topologies) == 0 {
		return nil, fmt.Errorf("%w: a sweep needs at least one delay and one topology", ErrConfig)
	}
	var out []Config
	for _, t := range s.Topologies {
		for _, d := range s.Delays {
			c := s.Base
			c.Topology = t
			c.Delay.Mean = d
			if err := c.Validate(); err != nil {
				return nil, fmt.Errorf("%v at mean delay %v: %w", t, d, err)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// Run validates every run first, then runs them one after another.
func (s Sweep) Run(ctx context.Context) ([]Point, error) {
	configs, err := s.Configs()
	if err != nil {
		return nil, err
	}
	var total, done time.Duration
	for _, c := range configs {
		total += c.Duration
	}
	points := make([]Point, 0, len(configs))
	for _, c := range configs {
		if s.Progress != nil {
			base := done
			c.Progress = func(d, _ time.Duration) { s.Progress(base+d, total) }
		}
		res, err := Run(ctx, c)
		if err != nil {
			return points, err
		}
		done += c.Duration
		points = append(points, Point{Topology: c.Topology, MeanDelay: c.Delay.Mean, Result: res})
	}
	return points, nil
}
