package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSimWritesTableCSVAndPlot(t *testing.T) {
	dir := t.TempDir()
	csvPath, plotPath := filepath.Join(dir, "out.csv"), filepath.Join(dir, "out.svg")
	out, err := run("sim", "-q", "--clients", "200", "--relays", "9", "--k", "2", "--delays", "20ms,50ms",
		"--duration", "20s", "--targets", "20", "--csv", csvPath, "--plot", plotPath)
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	for _, want := range []string{"restricted", "mesh", "entropy (bits)", "wrote " + csvPath, "wrote " + plotPath} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+4 { // header + 2 topologies × 2 delays
		t.Errorf("CSV has %d rows, want 5", len(rows))
	}
	svg, err := os.ReadFile(plotPath)
	if err != nil || !strings.Contains(string(svg), "<svg") {
		t.Errorf("plot is not an SVG (err %v)", err)
	}
}

func TestSimRefusesImpossibleParametersBeforeRunning(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--lambda-p", "-1"},
		{"--relays", "0"},
		{"--relays", "9", "--k", "4"},
		{"--topologies", "ring"},
		{"--plot", filepath.Join(dir, "x.gif")},
		{"--csv", filepath.Join(dir, "missing", "x.csv")},
	} {
		csvPath := filepath.Join(dir, "never.csv")
		full := append([]string{"sim", "-q", "--csv", csvPath, "--plot", ""}, args...)
		if _, err := run(full...); err == nil {
			t.Errorf("strata %v succeeded", full)
		}
		if _, err := os.Stat(csvPath); err == nil {
			t.Errorf("strata %v wrote %s before failing", full, csvPath)
		}
	}
}
