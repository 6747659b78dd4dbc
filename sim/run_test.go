package sim

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// small returns a network small enough for a unit test to run in well under
// a second: 1000 clients, 12 relays, mean delay 20ms.
func small() Config {
	c := DefaultConfig()
	c.Clients, c.Relays, c.Successors = 1000, 12, 2
	c.Delay = sphinx.DelayPolicy{Mean: 20 * time.Millisecond}
	c.Duration = 40 * time.Second
	c.Targets = 100
	return c
}

func TestValidateRejectsImpossibleParameters(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"zero relays", func(c *Config) { c.Relays = 0 }, "0 relays"},
		{"fewer relays than strata", func(c *Config) { c.Relays = 2 }, "cannot fill 3 strata"},
		{"zero layers", func(c *Config) { c.Layers = 0 }, "0 layers"},
		{"zero clients", func(c *Config) { c.Clients = 0 }, "0 clients"},
		{"k larger than a stratum", func(c *Config) { c.Successors = 5 }, "larger than a stratum"},
		{"k of zero", func(c *Config) { c.Successors = 0 }, "k = 0"},
		{"negative payload rate", func(c *Config) { c.LambdaP = -1 }, "λP"},
		{"NaN loop rate", func(c *Config) { c.LambdaL = math.NaN() }, "λL"},
		{"infinite drop rate", func(c *Config) { c.LambdaD = math.Inf(1) }, "λD"},
		{"negative relay loop rate", func(c *Config) { c.LambdaM = -0.5 }, "λM"},
		{"negative real rate", func(c *Config) { c.LambdaR = -0.5 }, "λR"},
		{"no traffic", func(c *Config) { c.LambdaP, c.LambdaL, c.LambdaD, c.LambdaR, c.Targets = 0, 0, 0, 0, 0 }, "no traffic"},
		{"real rate not below payload rate", func(c *Config) { c.LambdaR = c.LambdaP }, "without bound"},
		{"targets without real messages", func(c *Config) { c.LambdaR = 0 }, "no real messages"},
		{"negative targets", func(c *Config) { c.Targets = -1 }, "targets"},
		{"corrupt fraction above one", func(c *Config) { c.Corrupt = 1.5 }, "corrupt"},
		{"negative delay", func(c *Config) { c.Delay.Mean = -time.Millisecond }, "negative delay"},
		{"zero duration", func(c *Config) { c.Duration = 0 }, "duration"},
		{"negative warmup", func(c *Config) { c.Warmup = -time.Second }, "warmup"},
		{"duration too short for the delay", func(c *Config) { c.Delay.Mean = 2 * time.Second }, "raise the duration"},
		{"unknown topology", func(c *Config) { c.Topology = 7 }, "topology(7)"},
		{"too many relays", func(c *Config) { c.Relays = MaxRelays + 1 }, "relays"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := small()
			tc.edit(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrConfig mentioning %q", err, tc.want)
			}
			called := false
			c.Progress = func(_, _ time.Duration) { called = true }
			if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) || called {
				t.Fatalf("Run = %v after progress %v, want ErrConfig before running", err, called)
			}
		})
	}
	if err := small().Validate(); err != nil {
		t.Fatalf("the test network is invalid: %v", err)
	}
	mesh := small()
	mesh.Topology, mesh.Successors = FullMesh, 0
	if err := mesh.Validate(); err != nil {
		t.Fatalf("a full mesh needs no k: %v", err)
	}
}

func TestRunIsDeterministic(t *testing.T) {
	run := func(c Config) *Result {
		t.Helper()
		r, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		r.Wall = 0
		return r
	}
	a, b := run(small()), run(small())
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different results:\n%+v\n%+v", a, b)
	}
	c := small()
	c.Seed++
	if other := run(c); other.Entropy == a.Entropy || other.Packets == a.Packets {
		t.Fatalf("a different seed gave the same run: %+v", other.Entropy)
	}
}

func TestCorruptRelaysRemoveAnonymity(t *testing.T) {
	entropy := func(corrupt float64) Summary {
		t.Helper()
		c := small()
		c.Corrupt = corrupt
		r, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if want := int(corrupt*float64(c.Relays) + 0.5); r.Corrupt != want {
			t.Fatalf("%d corrupt relays, want %d", r.Corrupt, want)
		}
		return r.Entropy
	}
	honest, some, all := entropy(0), entropy(0.34), entropy(1)
	if all.N == 0 || all.Max != 0 {
		t.Fatalf("with every relay corrupt the adversary must trace every target: %+v", all)
	}
	if !(honest.Mean > some.Mean+0.5 && some.Mean > 0) {
		t.Fatalf("entropy honest %.3f, a third corrupt %.3f: corrupt relays should cost anonymity", honest.Mean, some.Mean)
	}
	if some.Min >= honest.Min {
		t.Fatalf("a third corrupt: the worst target %.3f bits is no worse than with honest relays %.3f", some.Min, honest.Min)
	}
}

func TestRestrictedRoutesNarrowTheExit(t *testing.T) {
	// With k successors a relay, a target can leave through at most k² relays
	// of the third stratum; with k = 1 through one.
	c := small()
	c.Relays = 24
	run := func(top Topology, k int) float64 {
		t.Helper()
		c.Topology, c.Successors = top, k
		r, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		return r.Entropy.Mean
	}
	one, four, mesh := run(Restricted, 1), run(Restricted, 4), run(FullMesh, 0)
	t.Logf("entropy k=1 %.3f, k=4 %.3f, full mesh %.3f bits", one, four, mesh)
	if !(one+2 < four && four < mesh) {
		t.Fatalf("entropy k=1 %.3f, k=4 %.3f, mesh %.3f: want it rising with the out-degree", one, four, mesh)
	}
}

// TestRestrictedRoutesMixNearlyAsWellAsTheMesh is issue 16's entropy
// figure: with 30 relays a stratum and k = 8, the v1 ring lattice cost
// 1.2 bits against the full mesh on this configuration (50 ms hops, 2,000
// clients); the beacon-drawn links must cost well under half of that.
func TestRestrictedRoutesMixNearlyAsWellAsTheMesh(t *testing.T) {
	c := small()
	c.Clients, c.Relays, c.Targets = 2000, 90, 200
	c.Delay = sphinx.DelayPolicy{Mean: 50 * time.Millisecond}
	entropy := func(top Topology) float64 {
		t.Helper()
		c.Topology, c.Successors = top, 8
		r, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		return r.Entropy.Mean
	}
	restricted, mesh := entropy(Restricted), entropy(FullMesh)
	t.Logf("entropy restricted k = 8 %.3f, full mesh %.3f bits: cost %.3f", restricted, mesh, mesh-restricted)
	if mesh-restricted > 0.5 {
		t.Fatalf("restricted routes cost %.3f bits against the mesh, want at most 0.5", mesh-restricted)
	}
}

func TestNetworkFollowsThePKIRules(t *testing.T) {
	for _, top := range []Topology{Restricted, FullMesh} {
		c := DefaultConfig()
		c.Relays, c.Successors, c.Topology = 100, 8, top
		s, err := newSim(c)
		if err != nil {
			t.Fatal(err)
		}
		g := s.net.graph
		for i, size := range []int{34, 33, 33} {
			if len(s.net.strata[i]) != size || len(g.Layers[i]) != size {
				t.Fatalf("%v: stratum %d has %d relays, want %d", top, i, len(s.net.strata[i]), size)
			}
		}
		for r := range c.Relays {
			layer, slot, ok := g.Position(s.net.ids[r])
			if !ok || layer != s.net.layer[r] {
				t.Fatalf("%v: relay %d is not where the graph has it", top, r)
			}
			want := g.Next(layer, slot)
			if len(want) != len(s.net.next[r]) {
				t.Fatalf("%v: relay %d has %d successors, the graph %d", top, r, len(s.net.next[r]), len(want))
			}
			for j, n := range s.net.next[r] {
				if s.net.ids[n] != want[j] {
					t.Fatalf("%v: relay %d successor %d differs from pki.Graph.Next", top, r, j)
				}
			}
		}
		// Walk routes the way the simulator draws them; each must be a
		// route the PKI accepts.
		for range 1000 {
			r := s.net.strata[0][s.rng.IntN(len(s.net.strata[0]))]
			route := []sphinx.NodeID{s.net.ids[r]}
			for !s.net.last(r) {
				r = s.net.next[r][s.rng.IntN(len(s.net.next[r]))]
				route = append(route, s.net.ids[r])
			}
			if !g.ValidRoute(route) {
				t.Fatalf("%v: simulated route is not valid in the PKI graph", top)
			}
		}
		if top == FullMesh && g.K < 34 {
			t.Fatalf("full mesh built with k = %d", g.K)
		}
	}
}

func TestProbabilityIsConserved(t *testing.T) {
	for _, corrupt := range []float64{0, 0.25} {
		c := small()
		c.Corrupt = corrupt
		s, err := newSim(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.loop(context.Background()); err != nil {
			t.Fatal(err)
		}
		finished := 0
		for tg := range s.anon.entropy {
			if s.anon.done[tg] < 0 {
				continue
			}
			finished++
			if sum := s.anon.out[tg] + s.anon.lost[tg]; math.Abs(sum-1) > 1e-9 {
				t.Fatalf("corrupt %v: target %d: %.12f of its probability left the network", corrupt, tg, sum)
			}
			if s.anon.lost[tg] > 1e-6 {
				t.Fatalf("corrupt %v: target %d lost %g of its probability below the floor", corrupt, tg, s.anon.lost[tg])
			}
		}
		if finished < c.Targets*9/10 {
			t.Fatalf("corrupt %v: only %d targets finished", corrupt, finished)
		}
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := small()
	var last time.Duration
	calls := 0
	c.Progress = func(done, total time.Duration) {
		if done < last || total != c.Duration {
			t.Fatalf("progress went from %v to %v of %v", last, done, total)
		}
		last = done
		if calls++; calls == 3 {
			cancel()
		}
	}
	if _, err := Run(ctx, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	c = small()
	c.Progress = func(done, total time.Duration) { last = done }
	if _, err := Run(context.Background(), c); err != nil || last != c.Duration {
		t.Fatalf("Run = %v with last progress %v, want %v", err, last, c.Duration)
	}
}

func TestEventQueuePopsInTimeOrder(t *testing.T) {
	s, err := newSim(small())
	if err != nil {
		t.Fatal(err)
	}
	var q eventQueue
	for i := range 5000 {
		q.push(event{at: s.rng.Int64N(1000), msg: int32(i)})
		if i%3 == 0 {
			q.pop()
		}
	}
	prev := int64(-1)
	for q.len() > 0 {
		e := q.pop()
		if e.at < prev {
			t.Fatalf("popped %d after %d", e.at, prev)
		}
		prev = e.at
	}
}

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	var h histogram
	for i := 1; i <= 100000; i++ {
		h.add(int64(i) * int64(time.Microsecond))
	}
	l := h.summary()
	for _, q := range []struct {
		got  time.Duration
		want float64
	}{{l.P50, 50000}, {l.P90, 90000}, {l.P99, 99000}, {l.Max, 100000}} {
		if got := float64(q.got) / float64(time.Microsecond); math.Abs(got/q.want-1) > 0.01 {
			t.Errorf("quantile %.0fµs, want %.0fµs", got, q.want)
		}
	}
	if math.Abs(float64(l.Mean)/float64(50000500*time.Nanosecond)-1) > 1e-9 {
		t.Errorf("mean %v", l.Mean)
	}
}
