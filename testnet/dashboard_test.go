package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// pageNet is a Network whose state the test sets: it exercises the page and
// the HTTP API alone. The real testnet is tested in testnet_test.go.
type pageNet struct {
	mu    sync.Mutex
	state State
}

func (p *pageNet) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.state
	s.Clients = append([]ClientState(nil), s.Clients...)
	for i := range s.Clients {
		s.Clients[i].Inbox = append([]Message(nil), s.Clients[i].Inbox...)
	}
	return s
}

func (p *pageNet) Send(_ context.Context, from, to int, text string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from < 0 || to < 0 || from >= len(p.state.Clients) || to >= len(p.state.Clients) {
		return "", errors.New("no such client")
	}
	id := fmt.Sprintf("m%d", len(p.state.Clients[to].Inbox)+1)
	p.state.Clients[to].Inbox = append(p.state.Clients[to].Inbox, Message{ID: id, From: p.state.Clients[from].Name, Text: text, Latency: 0.5})
	return id, nil
}

func newPageNet() *pageNet {
	s := State{ChainID: "strata-test", Height: 12, Epoch: 1}
	for l := range 3 {
		var layer []NodeState
		for j := range 3 {
			layer = append(layer, NodeState{ID: fmt.Sprintf("r%d%d", l, j), Name: fmt.Sprintf("relay-%d", 3*l+j+1), Layer: l, Up: true, RateIn: 1.5})
		}
		s.Layers = append(s.Layers, layer)
	}
	for l := range 2 {
		for j := range 3 {
			for k := range 3 {
				s.Edges = append(s.Edges, Edge{From: fmt.Sprintf("r%d%d", l, j), To: fmt.Sprintf("r%d%d", l+1, k)})
			}
		}
	}
	s.Clients = []ClientState{{Name: "alice", Home: "relay-1"}, {Name: "bob", Home: "relay-4"}}
	return &pageNet{state: s}
}

func TestStateIsServedAsJSON(t *testing.T) {
	srv := httptest.NewServer(Dashboard(newPageNet(), nil))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var s State
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if len(s.Layers) != 3 || len(s.Layers[2]) != 3 || len(s.Edges) != 18 || s.ChainID != "strata-test" {
		t.Errorf("state %+v", s)
	}
}

func TestSendRefusesBadRequests(t *testing.T) {
	srv := httptest.NewServer(Dashboard(newPageNet(), nil))
	defer srv.Close()
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"from":0,"to":1,"text":"hi"}`, 200},
		{`{"from":0,"to":1,"text":""}`, 400},
		{`{"from":0,"to":0,"text":"me"}`, 400},
		{`{"from":0,"to":9,"text":"nobody"}`, 422},
		{`{"from":0,"to":1,"text":"` + strings.Repeat("x", maxSendText+1) + `"}`, 400},
		{`{"from":0,"to":1,"text":"hi","extra":1}`, 400},
		{`{"from":0,"to":1,"text":"hi"}{}`, 400},
		{`not json`, 400},
		{`{"from":"zero"}`, 400},
	} {
		res, err := http.Post(srv.URL+"/api/send", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.code {
			t.Errorf("POST %.40q: %d %s, want %d", tc.body, res.StatusCode, msg, tc.code)
		}
	}
	if res, err := http.Get(srv.URL + "/api/send"); err != nil || res.StatusCode == http.StatusOK {
		t.Errorf("GET /api/send: %v %v", res.StatusCode, err)
	}
}

// TestPageHasNoExternalResources keeps the dashboard working offline: no
// file of the embedded page may load anything from another origin.
func TestPageHasNoExternalResources(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import\s+url\(\s*["']?(https?:)?//|fetch\(\s*["'](https?:)?//`)
	n := 0
	err := fs.WalkDir(webFS, "web", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := webFS.ReadFile(path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads an external resource: %s", path, m)
		}
		return nil
	})
	if err != nil || n < 3 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

func TestStatsQuantilesAndHistogram(t *testing.T) {
	var s Stats
	for i := 1; i <= 100; i++ {
		s.Sent()
		s.Delivered(time.Duration(i) * 10 * time.Millisecond)
	}
	s.Sent()
	s.Lost()
	c, h := s.Snapshot()
	if c.Sent != 101 || c.Delivered != 100 || c.Lost != 1 {
		t.Errorf("counters %+v", c)
	}
	if c.P50 != 0.5 || c.P99 != 0.99 {
		t.Errorf("p50 %v p99 %v, want 0.5 and 0.99", c.P50, c.P99)
	}
	var total uint64
	for _, n := range h.Counts {
		total += n
	}
	if total != 100 || h.Counts[0] != 10 || len(h.Counts) != len(h.Bounds)+1 {
		t.Errorf("histogram %+v", h)
	}
}
