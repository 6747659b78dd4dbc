package sim

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plot size: readable as a PNG at 100 % and in a Markdown page.
const (
	plotWidth  = 18 * vg.Centimeter
	plotHeight = 12 * vg.Centimeter
)

// NewPlot draws the mean target entropy against the mean per-hop delay, one
// line per topology, with bars from the 5th to the 95th percentile of the
// targets' entropies.
func NewPlot(points []Point) (*plot.Plot, error) {
	if len(points) == 0 {
		return nil, fmt.Errorf("%w: nothing to plot", ErrConfig)
	}
	measured := false
	for _, pt := range points {
		measured = measured || pt.Result.Entropy.N > 0
	}
	if !measured {
		return nil, fmt.Errorf("%w: no run measured any entropy to plot (no target finished)", ErrConfig)
	}
	p := plot.New()
	c := points[0].Result.Config
	p.Title.Text = fmt.Sprintf("Target entropy at the exit\n%d clients, %d relays in %d strata, λP=%g λL=%g λD=%g λR=%g per s, %g%% corrupt",
		c.Clients, c.Relays, c.Layers, c.LambdaP, c.LambdaL, c.LambdaD, c.LambdaR, 100*c.Corrupt)
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = "mean per-hop delay (ms)"
	p.Y.Label.Text = "entropy (bits), bars: 5th to 95th percentile of targets"
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(6)
	p.Legend.YOffs = vg.Points(6)
	p.Add(plotter.NewGrid())
	var ticks plot.ConstantTicks
	logX := true
	for _, pt := range points {
		if pt.MeanDelay <= 0 {
			logX = false
		}
		ms := float64(pt.MeanDelay) / float64(time.Millisecond)
		if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Value == ms }) {
			ticks = append(ticks, plot.Tick{Value: ms, Label: fmt.Sprintf("%g", ms)})
		}
	}
	if logX {
		p.X.Scale = plot.LogScale{}
	}
	p.X.Tick.Marker = ticks
	var order []Topology
	for _, pt := range points {
		if !slices.Contains(order, pt.Topology) {
			order = append(order, pt.Topology)
		}
	}
	for i, t := range order {
		var line plotter.XYs
		var bars plotter.YErrors
		label := ""
		for _, pt := range points {
			if pt.Topology != t || pt.Result.Entropy.N == 0 {
				continue
			}
			e := pt.Result.Entropy
			line = append(line, plotter.XY{X: float64(pt.MeanDelay) / float64(time.Millisecond), Y: e.Mean})
			bars = append(bars, struct{ Low, High float64 }{e.Mean - e.P5, e.P95 - e.Mean})
			label = legend(t, pt.Result)
		}
		if len(line) == 0 {
			continue
		}
		l, s, err := plotter.NewLinePoints(line)
		if err != nil {
			return nil, fmt.Errorf("sim: plot: %w", err)
		}
		l.Color, s.Color = plotutil.DarkColors[i%len(plotutil.DarkColors)], plotutil.DarkColors[i%len(plotutil.DarkColors)]
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(1.5)
		s.Shape = plotutil.Shape(i)
		s.Radius = vg.Points(3)
		eb, err := plotter.NewYErrorBars(errorPoints{line, bars})
		if err != nil {
			return nil, fmt.Errorf("sim: plot: %w", err)
		}
		eb.Color = l.Color
		p.Add(l, s, eb)
		p.Legend.Add(label, l, s)
	}
	return p, nil
}

// legend names a topology's line with its parameters.
func legend(t Topology, r *Result) string {
	if t == FullMesh {
		return fmt.Sprintf("full mesh (each relay links to all %d of the next stratum)", r.K)
	}
	return fmt.Sprintf("strata + restricted routes (k=%d successors)", r.K)
}

// errorPoints joins a line's points to their error bars.
type errorPoints struct {
	plotter.XYs
	plotter.YErrors
}

// WritePlot writes the plot of points in format "svg" or "png".
func WritePlot(w io.Writer, format string, points []Point) error {
	if format != "svg" && format != "png" {
		return fmt.Errorf("%w: plot format %q (want svg or png)", ErrConfig, format)
	}
	p, err := NewPlot(points)
	if err != nil {
		return err
	}
	wt, err := p.WriterTo(plotWidth, plotHeight, format)
	if err != nil {
		return fmt.Errorf("sim: plot: %w", err)
	}
	if _, err := wt.WriteTo(w); err != nil {
		return fmt.Errorf("sim: plot: %w", err)
	}
	return nil
}

// PlotFormat returns the plot format a file name asks for, from its
// extension: "svg" or "png".
func PlotFormat(path string) (string, error) {
	f := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	if f != "svg" && f != "png" {
		return "", fmt.Errorf("%w: plot file %q must end in .svg or .png", ErrConfig, path)
	}
	return f, nil
}

// SavePlot writes the plot of points to path, in the format its extension
// names.
func SavePlot(path string, points []Point) (err error) {
	format, err := PlotFormat(path)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sim: plot: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("sim: plot: %w", cerr)
		}
	}()
	return WritePlot(f, format, points)
}
