package sim

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"image/png"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-mix/strata/sphinx"
)

// TestEntropyRisesWithDelayAndCover reproduces the shape of the Loopix
// paper's entropy-versus-delay result (its Figure 10): at a fixed seed,
// entropy grows with the mean delay (more messages share each pool), and
// at every delay more cover traffic buys more entropy (fuller pools).
func TestEntropyRisesWithDelayAndCover(t *testing.T) {
	delays := []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond}
	entropy := map[float64][]float64{}
	for _, cover := range []float64{0.25, 2} {
		base := DefaultConfig()
		base.Clients, base.Relays = 500, 15
		base.LambdaL, base.LambdaD = cover, cover
		base.Duration = 75 * time.Second
		base.Targets = 100
		points, err := Sweep{Base: base, Delays: delays, Topologies: []Topology{FullMesh}}.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range points {
			entropy[cover] = append(entropy[cover], p.Result.Entropy.Mean)
		}
		t.Logf("λL = λD = %v: entropy %.2f bits at %v", cover, entropy[cover], delays)
	}
	for cover, hs := range entropy {
		for i := 1; i < len(hs); i++ {
			if hs[i] < hs[i-1]+0.5 {
				t.Errorf("λL = λD = %v: entropy %.2f at %v is not above %.2f at %v", cover, hs[i], delays[i], hs[i-1], delays[i-1])
			}
		}
	}
	for i, d := range delays {
		if entropy[2][i] < entropy[0.25][i]+0.3 {
			t.Errorf("at %v: more cover gives %.2f bits, less cover %.2f", d, entropy[2][i], entropy[0.25][i])
		}
	}
}

func TestSweepChecksEveryRunBeforeRunning(t *testing.T) {
	base := small()
	ran := false
	s := Sweep{
		Base:       base,
		Delays:     []time.Duration{10 * time.Millisecond, 10 * time.Second},
		Topologies: []Topology{Restricted},
		Progress:   func(_, _ time.Duration) { ran = true },
	}
	if _, err := s.Run(context.Background()); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "10s") || ran {
		t.Fatalf("Run = %v (ran %v), want ErrConfig naming the 10s delay before running", err, ran)
	}
	if _, err := (Sweep{Base: base}).Run(context.Background()); !errors.Is(err, ErrConfig) {
		t.Fatalf("empty sweep: %v", err)
	}
}

func sweepPoints(t *testing.T) []Point {
	t.Helper()
	base := small()
	base.Targets = 30
	points, err := Sweep{Base: base, Delays: []time.Duration{10 * time.Millisecond, 40 * time.Millisecond}, Topologies: []Topology{Restricted, FullMesh}}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return points
}

func TestWriteCSVRoundTrips(t *testing.T) {
	points := sweepPoints(t)
	var buf bytes.Buffer
	if err := WriteCSV(&buf, points); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(points) {
		t.Fatalf("%d rows for %d points", len(rows), len(points))
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for i, p := range points {
		row := rows[i+1]
		if row[col["topology"]] != p.Topology.String() {
			t.Errorf("row %d topology %q", i, row[col["topology"]])
		}
		for name, want := range map[string]float64{
			"mean_delay_ms": float64(p.MeanDelay) / 1e6,
			"entropy_mean":  p.Result.Entropy.Mean,
			"real_packets":  float64(p.Result.Packets.Real),
		} {
			got, err := strconv.ParseFloat(row[col[name]], 64)
			if err != nil || got != want && (got-want)/want > 1e-5 {
				t.Errorf("row %d %s = %q, want %v", i, name, row[col[name]], want)
			}
		}
	}
}

func TestPlotsDrawEveryTopology(t *testing.T) {
	points := sweepPoints(t)
	var svg bytes.Buffer
	if err := WritePlot(&svg, "svg", points); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "restricted routes (k=2", "full mesh", "mean per-hop delay"} {
		if !strings.Contains(svg.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	var pngBuf bytes.Buffer
	if err := WritePlot(&pngBuf, "png", points); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&pngBuf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
		t.Fatalf("PNG is %v", b)
	}
	if err := WritePlot(&svg, "gif", points); !errors.Is(err, ErrConfig) {
		t.Fatalf("gif: %v", err)
	}
	if _, err := PlotFormat("out.pdf"); !errors.Is(err, ErrConfig) {
		t.Fatalf("pdf: %v", err)
	}
	none := []Point{{Topology: Restricted, MeanDelay: time.Millisecond, Result: &Result{}}}
	if err := WritePlot(&svg, "svg", none); !errors.Is(err, ErrConfig) {
		t.Fatalf("plot of nothing: %v", err)
	}
	path := t.TempDir() + "/entropy.PNG"
	if err := SavePlot(path, points); err != nil {
		t.Fatal(err)
	}
}

func TestParseTopology(t *testing.T) {
	for _, top := range []Topology{Restricted, FullMesh} {
		if got, err := ParseTopology(top.String()); err != nil || got != top {
			t.Errorf("ParseTopology(%q) = %v, %v", top, got, err)
		}
	}
	if _, err := ParseTopology("ring"); !errors.Is(err, ErrConfig) {
		t.Errorf("ring: %v", err)
	}
	var _ = sphinx.DelayPolicy{}
}
