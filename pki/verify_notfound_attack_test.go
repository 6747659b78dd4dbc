package pki

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// notFoundLiar is a reverse proxy in front of a validator's RPC that
// answers every abci_query for a path under prefix "not found" (a
// well-formed JSON-RPC answer, with no proof, as a real endpoint gives
// it) and forwards everything else.
type notFoundLiar struct {
	URL string

	mu     sync.Mutex
	prefix string
	lies   int
}

func newNotFoundLiar(t *testing.T, target, prefix string) *notFoundLiar {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &notFoundLiar{URL: "http://" + l.Addr().String(), prefix: prefix}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req rpcRequest
		_ = json.Unmarshal(body, &req)
		p.mu.Lock()
		lie := p.prefix != "" && req.Method == "abci_query" && strings.HasPrefix(req.Params.Path, p.prefix)
		if lie {
			p.lies++
		}
		p.mu.Unlock()
		if !lie {
			forward(rp, w, r, body, req)
			return
		}
		out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": map[string]any{
			"response": map[string]any{"code": QueryCodeNotFound, "log": "no such document", "height": "0"}}})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

func (p *notFoundLiar) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lies
}

// An endpoint listed first answers "not found" for every topology
// document; the second is an honest validator. The cache must get the
// current and, once frozen, the next epoch's topology from the honest
// endpoint (a "not found" proves nothing), warn about the liar at most
// once, and keep it out of use; a document that no endpoint has is still
// ErrNotFound, and two honest endpoints that both say "not found" refuse
// neither.
func TestLyingRPCNotFoundListedFirstDoesNotHideTopologies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a validator")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, _ := startChainHome(t, "strata-honest", "")
	waitHeight(t, n, 3, 10*time.Second)
	root := rootAt(ctx, t, n.RPC(), 1)
	liar := newNotFoundLiar(t, n.RPC(), QueryTopology+"/")
	logs := &countingHandler{}
	v, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{liar.URL, n.RPC()}, TrustHeight: 1, TrustHash: root, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cache := NewTopologyCache(v)
	if err := cache.Refresh(ctx); err != nil {
		t.Fatalf("liar first, honest second: refresh %v", err)
	}
	if cur, ei := cache.Current(), cache.Epoch(); cur == nil || cur.Epoch != ei.Epoch {
		t.Fatalf("current topology %v at epoch %d", cur, ei.Epoch)
	}
	if liar.count() == 0 {
		t.Fatal("the liar was never asked")
	}
	// Until the next epoch's document freezes, every endpoint says "not
	// found"; then the honest one has it and the liar must not hide it.
	deadline := time.Now().Add(time.Minute)
	for cache.Next() == nil || cache.Next().Epoch != cache.Epoch().Epoch+1 {
		if time.Now().After(deadline) {
			t.Fatalf("no next topology within a minute (epoch %d, height %d)", cache.Epoch().Epoch, n.App().lastHeight())
		}
		if err := cache.Refresh(ctx); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("next topology %d verified at height %d; the liar lied %d times", cache.Next().Epoch, n.App().lastHeight(), liar.count())
	if w := logs.count(slog.LevelWarn, "pki: RPC endpoint"); len(w) > 1 {
		t.Fatalf("%d warnings about the liar, want at most 1: %v", len(w), w)
	}
	st := v.Status()
	if st.Endpoint != n.RPC() || st.Down[liar.URL] == "" {
		t.Fatalf("status %+v: want the honest endpoint in use and the liar skipped", st)
	}
	far := cache.Epoch().Epoch + 50
	if _, err := v.Topology(ctx, far); !errors.Is(err, ErrNotFound) {
		t.Fatalf("topology %d, which no endpoint has: %v, want ErrNotFound", far, err)
	}

	// Two honest endpoints that both say "not found": neither is refused.
	fwd := newLyingRPC(t, n.RPC())
	hlogs := &countingHandler{}
	h, err := NewVerifier(ctx, VerifierConfig{Endpoints: []string{fwd.URL, n.RPC()}, TrustHeight: 1, TrustHash: root, Logger: slog.New(hlogs)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for range 3 {
		if _, err := h.Topology(ctx, far); !errors.Is(err, ErrNotFound) {
			t.Fatalf("honest endpoints, topology %d: %v, want ErrNotFound", far, err)
		}
	}
	if st := h.Status(); st.Endpoint != fwd.URL || len(st.Down) != 0 {
		t.Fatalf("status %+v: want both honest endpoints up, the first in use", st)
	}
	if w := hlogs.count(slog.LevelWarn, "refused"); len(w) != 0 {
		t.Fatalf("honest endpoints refused: %v", w)
	}
}
