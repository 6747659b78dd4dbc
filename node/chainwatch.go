package node

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/strata-mix/strata/pki"
)

// chainWatch logs a node's chain work failing once per change, not once
// per attempt: one WARN when a kind of work (the PKI agent's registration
// steps) starts failing, one INFO when it works again. Repeats go to DEBUG.
// A refused answer (fork, wrong chain, stale, unverified, trust expired) is
// logged at ERROR, once per kind of refusal in a row. (pki.Verifier logs
// each endpoint going down and coming back once; pki.TopologyCache logs
// failing refreshes once per kind.)
type chainWatch struct {
	log *slog.Logger

	mu      sync.Mutex
	failing map[string]failState // by kind of work ("registration")
}

type failState struct {
	kind  string // errKind of the error that started (or last changed) the failure
	since time.Time
}

func newChainWatch(log *slog.Logger) *chainWatch {
	return &chainWatch{log: log, failing: map[string]failState{}}
}

// result logs what (a kind of read) failing for the first time, failing
// for another reason, or working again.
func (w *chainWatch) result(what string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, wasFailing := w.failing[what]
	if err == nil {
		if wasFailing {
			delete(w.failing, what)
			w.log.Info("chain work succeeds again", "what", what, "after", time.Since(f.since).Round(time.Millisecond))
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	kind, refused := errKind(err)
	if wasFailing && f.kind == kind {
		w.log.Debug("chain work still fails", "what", what, "err", err)
		return
	}
	if !wasFailing {
		f.since = time.Now()
	}
	f.kind = kind
	w.failing[what] = f
	if refused {
		w.log.Error("chain answer refused", "what", what, "err", err)
		return
	}
	w.log.Warn("chain work fails; retrying", "what", what, "err", err)
}

// errKind names the class of a read error and whether it is a refused
// answer (an endpoint lying or serving something else) rather than an
// outage.
func errKind(err error) (string, bool) {
	for _, k := range []struct {
		err  error
		name string
	}{
		{pki.ErrFork, "fork"}, {pki.ErrWrongChain, "wrong chain"}, {pki.ErrStaleAnswer, "stale"},
		{pki.ErrUnverified, "unverified"}, {pki.ErrTrustExpired, "trust expired"},
	} {
		if errors.Is(err, k.err) {
			return k.name, true
		}
	}
	return "unreachable", false
}
