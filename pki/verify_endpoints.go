package pki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cometbft/cometbft/light/provider"
	lighthttp "github.com/cometbft/cometbft/light/provider/http"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	coretypes "github.com/cometbft/cometbft/rpc/core/types"
	rpctypes "github.com/cometbft/cometbft/rpc/jsonrpc/types"
	"github.com/cometbft/cometbft/types"
)

const (
	// endpointTimeout bounds one request to an endpoint, so that a
	// black-holed endpoint costs at most this before the next is tried.
	endpointTimeout = 3 * time.Second
	// endpointRetry is how often an endpoint that is down is probed
	// (with a status request) to bring it back.
	endpointRetry = 2 * time.Second
	// refusedRetry is how long an endpoint whose answer was refused
	// (stale, unverified) is skipped while another endpoint is up.
	refusedRetry = 30 * time.Second
)

// endpoint is one RPC endpoint and its health.
type endpoint struct {
	url         string
	witnessOnly bool
	rpc         *rpchttp.HTTP

	// Guarded by endpointSet.mu.
	down    error // why it is skipped; nil when up
	dropped bool  // sided with a fork: skipped until restart
	refused bool  // an answer of it was refused since its last accepted one
	retryAt time.Time
	probing bool
}

// endpointSet is a chain's RPC endpoints in order of preference: queries
// and broadcasts go to the first that is up, every other serves as a
// witness. An endpoint that fails (no connection, timeout, another chain)
// is skipped and probed every endpointRetry until it answers again; then
// it is used again in its place of preference.
type endpointSet struct {
	chainID string
	log     *slog.Logger

	mu    sync.Mutex
	eps   []*endpoint
	inUse *endpoint
}

func newEndpointSet(urls, witnesses []string, log *slog.Logger) (*endpointSet, error) {
	s := &endpointSet{log: log}
	seen := map[string]bool{}
	add := func(u string, witnessOnly bool) error {
		u = strings.TrimSpace(u)
		if u == "" || seen[u] {
			return nil
		}
		seen[u] = true
		c, err := rpchttp.NewWithTimeout(u, uint(endpointTimeout/time.Second))
		if err != nil {
			return fmt.Errorf("pki: rpc %s: %w", u, err)
		}
		s.eps = append(s.eps, &endpoint{url: u, witnessOnly: witnessOnly, rpc: c})
		return nil
	}
	for _, u := range urls {
		if err := add(u, false); err != nil {
			return nil, err
		}
	}
	for _, u := range witnesses {
		if err := add(u, true); err != nil {
			return nil, err
		}
	}
	if len(s.eps) == 0 || s.eps[0].witnessOnly {
		return nil, errors.New("pki: no RPC endpoint")
	}
	return s, nil
}

// learnChainID sets the chain id: want if not empty, else the id of the
// first endpoint (in order) whose block at rootHeight has rootHash (when
// a root is given), else the id the first endpoint to answer reports.
// Endpoints that answer with another id are marked down with
// ErrWrongChain; endpoints that do not answer are marked down.
func (s *endpointSet) learnChainID(ctx context.Context, want string, rootHeight int64, rootHash []byte) error {
	var errs []error
	nets := make([]string, len(s.eps))
	for i, ep := range s.eps {
		st, err := statusOf(ctx, ep)
		if err != nil {
			s.fail(ep, err)
			errs = append(errs, err)
			continue
		}
		nets[i] = st.NodeInfo.Network
	}
	if want == "" && rootHeight > 0 {
		for i, ep := range s.eps {
			if nets[i] != "" && servesRoot(ctx, ep, rootHeight, rootHash) {
				want = nets[i]
				break
			}
		}
	}
	for i, ep := range s.eps {
		switch {
		case nets[i] == "":
		case want == "":
			want = nets[i]
		case nets[i] != want:
			err := wrongChain(ep, nets[i], want)
			s.fail(ep, err)
			errs = append(errs, err)
		}
	}
	if want == "" {
		return fmt.Errorf("%w: %w", ErrNoEndpoint, errors.Join(errs...))
	}
	s.chainID = want
	return nil
}

// servesRoot reports whether ep's block at height has hash.
func servesRoot(ctx context.Context, ep *endpoint, height int64, hash []byte) bool {
	ctx, cancel := context.WithTimeout(ctx, endpointTimeout)
	defer cancel()
	b, err := ep.rpc.Block(ctx, &height)
	return err == nil && b.Block != nil && bytes.Equal(b.BlockID.Hash, hash)
}

func statusOf(ctx context.Context, ep *endpoint) (*coretypes.ResultStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, endpointTimeout)
	defer cancel()
	st, err := ep.rpc.Status(ctx)
	if err != nil {
		return nil, &endpointError{fmt.Errorf("pki: status of %s: %w", ep.url, err)}
	}
	return st, nil
}

// endpointError is a request to an endpoint that failed (no connection,
// timeout, a reply that is not JSON-RPC, another chain) rather than got
// an answer: the next endpoint is tried.
type endpointError struct{ err error }

func (e *endpointError) Error() string { return e.err.Error() }
func (e *endpointError) Unwrap() error { return e.err }

// rpcError wraps err, returned by a request to ep, as an endpointError
// unless the endpoint answered it (a JSON-RPC error) or the caller's ctx
// ended.
func rpcError(ctx context.Context, ep *endpoint, what string, err error) error {
	werr := fmt.Errorf("pki: %s at %s: %w", what, ep.url, err)
	var rpcErr *rpctypes.RPCError
	if ctx.Err() != nil || errors.As(err, &rpcErr) {
		return werr
	}
	return &endpointError{werr}
}

func endpointFailure(err error) bool {
	var e *endpointError
	return errors.As(err, &e)
}

func wrongChain(ep *endpoint, got, want string) error {
	return &endpointError{fmt.Errorf("%w: %s serves %q, want %q", ErrWrongChain, ep.url, got, want)}
}

// pick returns the endpoint queries go to now: the first non-witness
// endpoint that is up, or nil. It starts probes of endpoints that are due.
func (s *endpointSet) pick() *endpoint { return s.pickExcept(nil) }

// pickExcept is pick with the endpoints in skip left out (those that
// answered "not found" to the query being made); the endpoint in use
// only changes when skip is empty.
func (s *endpointSet) pickExcept(skip []*endpoint) *endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.probeDue()
	for _, ep := range s.eps {
		if !ep.witnessOnly && ep.down == nil && !slices.Contains(skip, ep) {
			if len(skip) > 0 {
				return ep
			}
			if s.inUse != nil && s.inUse != ep {
				s.log.Info("pki: RPC endpoint in use changed", "from", s.inUse.url, "to", ep.url)
			}
			s.inUse = ep
			return ep
		}
	}
	return nil
}

// witnesses returns the endpoints that are up other than primary.
func (s *endpointSet) witnesses(primary *endpoint) []*endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*endpoint
	for _, ep := range s.eps {
		if ep != primary && ep.down == nil {
			out = append(out, ep)
		}
	}
	return out
}

// fail marks ep down because of err, warning once per outage.
func (s *endpointSet) fail(ep *endpoint, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep.down == nil {
		role := "endpoint"
		if ep.witnessOnly {
			role = "witness"
		}
		s.log.Warn("pki: RPC "+role+" down; skipping it until it answers", "endpoint", ep.url, "err", err)
	}
	ep.down = err
	ep.retryAt = time.Now().Add(endpointRetry)
}

// refuse skips ep for refusedRetry because an answer of it was refused
// (err: stale, unverified, or a "not found" another endpoint disproved),
// warning once until an answer of it is accepted again.
func (s *endpointSet) refuse(ep *endpoint, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ep.refused {
		s.log.Warn("pki: RPC endpoint refused: its answer is stale, unverified or disproved; using the next endpoint", "endpoint", ep.url, "err", err)
	}
	ep.refused = true
	ep.down = err
	ep.retryAt = time.Now().Add(refusedRetry)
}

// othersUp reports whether a query endpoint other than ep and those in
// skip is up.
func (s *endpointSet) othersUp(ep *endpoint, skip []*endpoint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.eps {
		if e != ep && !e.witnessOnly && e.down == nil && !slices.Contains(skip, e) {
			return true
		}
	}
	return false
}

// served records that an answer of ep was accepted.
func (s *endpointSet) served(ep *endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ep.refused = false
}

// noneUp is the error of a request when every endpoint is down: why each
// is.
func (s *endpointSet) noneUp() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, ep := range s.eps {
		if ep.down != nil && !ep.witnessOnly {
			errs = append(errs, ep.down)
		}
	}
	return fmt.Errorf("%w (none is up): %w", ErrNoEndpoint, errors.Join(errs...))
}

func (s *endpointSet) isDown(ep *endpoint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ep.down != nil
}

// drop takes ep out of use until restart.
func (s *endpointSet) drop(ep *endpoint, why error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ep.down, ep.dropped = why, true
}

// probeDue starts a status probe of every endpoint that is down and due.
// s.mu is held.
func (s *endpointSet) probeDue() {
	now := time.Now()
	for _, ep := range s.eps {
		if ep.down == nil || ep.dropped || ep.probing || now.Before(ep.retryAt) {
			continue
		}
		ep.probing = true
		go s.probe(ep)
	}
}

func (s *endpointSet) probe(ep *endpoint) {
	st, err := statusOf(context.Background(), ep)
	if err == nil && st.NodeInfo.Network != s.chainID {
		err = wrongChain(ep, st.NodeInfo.Network, s.chainID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ep.probing = false
	if ep.dropped {
		return
	}
	if err != nil {
		ep.down, ep.retryAt = err, time.Now().Add(endpointRetry)
		return
	}
	if ep.down != nil && !ep.refused {
		s.log.Info("pki: RPC endpoint answers again", "endpoint", ep.url)
	}
	ep.down = nil
}

// status fills the endpoint part of a VerifierStatus.
func (s *endpointSet) status(st *VerifierStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.ChainID = s.chainID
	st.Down = map[string]string{}
	for _, ep := range s.eps {
		switch {
		case ep.down != nil:
			st.Down[ep.url] = ep.down.Error()
		case st.Endpoint == "" && !ep.witnessOnly:
			st.Endpoint = ep.url
		default:
			st.Witnesses = append(st.Witnesses, ep.url)
		}
	}
}

// lightProvider is an endpoint as a light-client provider: a request to
// an endpoint that is down fails at once, and a failing request marks it
// down, so one dead witness neither stalls nor breaks verification.
type lightProvider struct {
	set *endpointSet
	ep  *endpoint
	p   provider.Provider
}

func (s *endpointSet) provider(ep *endpoint) *lightProvider {
	return &lightProvider{set: s, ep: ep, p: lighthttp.NewWithClient(s.chainID, ep.rpc)}
}

func (l *lightProvider) ChainID() string { return l.p.ChainID() }
func (l *lightProvider) String() string  { return l.ep.url }

func (l *lightProvider) LightBlock(ctx context.Context, height int64) (*types.LightBlock, error) {
	l.set.mu.Lock()
	down := l.ep.down
	l.set.mu.Unlock()
	if down != nil {
		return nil, provider.ErrNoResponse
	}
	rctx, cancel := context.WithTimeout(ctx, endpointTimeout)
	defer cancel()
	lb, err := l.p.LightBlock(rctx, height)
	switch {
	case err == nil, ctx.Err() != nil,
		errors.Is(err, provider.ErrLightBlockNotFound), errors.Is(err, provider.ErrHeightTooHigh):
		return lb, err
	case errors.Is(err, context.DeadlineExceeded):
		// The endpoint's deadline, not the caller's: it did not answer.
		l.set.fail(l.ep, err)
		return nil, provider.ErrNoResponse
	}
	l.set.fail(l.ep, err)
	return lb, err
}

func (l *lightProvider) ReportEvidence(ctx context.Context, ev types.Evidence) error {
	rctx, cancel := context.WithTimeout(ctx, endpointTimeout)
	defer cancel()
	return l.p.ReportEvidence(rctx, ev)
}
