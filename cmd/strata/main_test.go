package main

import (
	"bytes"
	"strings"
	"testing"
)

func run(args ...string) (string, error) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersionPrintsReleaseAndGeometry(t *testing.T) {
	out, err := run("version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"strata " + version, "2341 B packet"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output %q lacks %q", out, want)
		}
	}
}

func TestBadCommandLinesFailCleanly(t *testing.T) {
	for _, args := range [][]string{{"nonsense"}, {"version", "extra"}, {"version", "--no-such-flag"}, {"stray-arg"}} {
		if _, err := run(args...); err == nil {
			t.Errorf("strata %v succeeded", args)
		}
	}
}

func TestTestnetRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"testnet", "--relays", "2", "--data-dir", t.TempDir()},
		{"testnet", "--clients", "1", "--data-dir", t.TempDir()},
		{"testnet", "--log-level", "loud"},
		{"testnet", "--mean-delay", "-5ms", "--data-dir", t.TempDir()},
		{"testnet", "extra-arg"},
	} {
		if _, err := run(args...); err == nil {
			t.Errorf("strata %v succeeded", args)
		}
	}
}
