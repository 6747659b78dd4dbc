package client

import (
	"fmt"
	"os"
	"testing"
)

// sharedTemp holds the state directories of nodes started by examples and
// benchmarks, which have no testing.T to make one.
var sharedTemp string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-client-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sharedTemp = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
