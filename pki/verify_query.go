package pki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/light"
	"github.com/cometbft/cometbft/light/provider"
	lighthttp "github.com/cometbft/cometbft/light/provider/http"
	lightstore "github.com/cometbft/cometbft/light/store"
	"github.com/cometbft/cometbft/types"
)

const (
	// witnessLag is how long the verifier waits for a witness to reach
	// the height it verifies before leaving it out of that verification.
	witnessLag = 2 * time.Second
	// The light client's bounds: a header may be this far ahead of the
	// local clock, and a witness that is behind is waited for
	// 2·maxClockDrift + maxBlockLag before it counts as not answering.
	maxClockDrift = 5 * time.Second
	maxBlockLag   = 2 * time.Second
	// headerWait bounds the wait for an answer's verifying header H+1
	// on the endpoint that gave the answer: one that claims a height its
	// chain does not reach in this time is refused.
	headerWait = 15 * time.Second
)

// retryError is a verification that failed because witnesses stopped
// answering during it; it is retried without them.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// query runs a proving query and checks its answer against header H+1;
// it returns the value, H and header H+1's time.
func (v *Verifier) query(ctx context.Context, path string, slots ...int) ([]byte, int64, time.Time, error) {
	v.mu.Lock()
	floor := v.accepted.height
	v.mu.Unlock()
	var (
		value []byte
		h     int64
		vt    time.Time
	)
	err := v.withEndpoint(ctx, func(ep *endpoint) error {
		val, qh, proof, err := queryProof(ctx, ep, path, true)
		if err != nil {
			return err
		}
		if proof == nil {
			return fmt.Errorf("%w: %s came without a proof from %s", ErrUnverified, path, ep.url)
		}
		if qh+1 < floor {
			return fmt.Errorf("%w: %s from %s is at height %d, verified by header %d, lower than header %d an answer was already accepted at",
				ErrStaleAnswer, path, ep.url, qh, qh+1, floor)
		}
		// Header H+1, which carries the application hash of height H,
		// is usually a block away.
		wctx, cancel := context.WithTimeout(ctx, headerWait)
		err = v.waitHeight(wctx, ep, qh+1)
		late := wctx.Err() != nil
		cancel()
		if err != nil && ctx.Err() == nil && late {
			return fmt.Errorf("%w: %s from %s is at height %d, but it has not reached height %d within %v", ErrUnverified, path, ep.url, qh, qh+1, headerWait)
		}
		if err != nil {
			return err
		}
		lb, persisted, err := v.verifyHeader(ctx, ep, qh+1)
		if err != nil {
			return err
		}
		if err := verifyProof(lb.AppHash, proof, val, slots...); err != nil {
			return fmt.Errorf("%w: %s from %s at height %d: %w", ErrUnverified, path, ep.url, qh, err)
		}
		if err := v.accept(lb, persisted); err != nil {
			return fmt.Errorf("%s from %s at height %d: %w", path, ep.url, qh, err)
		}
		value, h, vt = val, qh, lb.Time
		return nil
	})
	return value, h, vt, err
}

// accept applies the age rule to an answer's verifying header and
// raises the floor of the height rule; persisted says whether the header
// is in the trusted store (see verifyHeader).
func (v *Verifier) accept(lb *types.LightBlock, persisted bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.checkAge(lb.Height, lb.Time); err != nil {
		return err
	}
	if lb.Height > v.accepted.height {
		v.accepted = mark{lb.Height, lb.Time}
	}
	if persisted && lb.Height > v.stored.height {
		v.stored = mark{lb.Height, lb.Time}
	}
	return nil
}

// checkAge is the age rule for a verifying header. v.mu is held.
func (v *Verifier) checkAge(height int64, t time.Time) error {
	if age, max := time.Since(t), v.maxAge(); max > 0 && age > max {
		return fmt.Errorf("%w: its verifying header %d is %v old, more than the %v allowed", ErrStaleAnswer, height, age.Round(time.Millisecond), max)
	}
	return nil
}

// maxAge is MaxAge, or two epochs: Params.EpochBlocks of the last
// verified topology times the mean block interval between the trusted
// header the verifier started from and the highest accepted verifying
// header; 0 (no age rule) until both are known. v.mu is held.
func (v *Verifier) maxAge() time.Duration {
	if v.cfg.MaxAge > 0 {
		return v.cfg.MaxAge
	}
	if v.epochBlocks == 0 || v.accepted.height <= v.first.height {
		return 0
	}
	iv := v.accepted.time.Sub(v.first.time) / time.Duration(v.accepted.height-v.first.height)
	return 2 * time.Duration(v.epochBlocks) * max(iv, 0)
}

// withEndpoint runs do on the endpoint in use, and on the next ones while
// the endpoint fails. A "not found" is not provable: it moves the query
// to the next query endpoint that is up, and is the answer only when
// every one that answers says so; endpoints whose "not found" another
// endpoint disproves with an accepted answer are refused.
func (v *Verifier) withEndpoint(ctx context.Context, do func(*endpoint) error) error {
	var (
		errs     []error
		notFound []*endpoint // said "not found" to this query
		nfErr    error
	)
	for range len(v.set.eps) + 2 {
		ep := v.set.pickExcept(notFound)
		if ep == nil {
			break
		}
		err := do(ep)
		var retry *retryError
		switch {
		case err == nil:
			v.set.served(ep)
			for _, e := range notFound {
				v.set.refuse(e, fmt.Errorf("%w: it answered %q, but %s answered with a verified value", ErrUnverified, ErrNotFound.Error(), ep.url))
			}
			return nil
		case ctx.Err() != nil, errors.Is(err, ErrFork), errors.Is(err, ErrTrustExpired):
			// A fork is refused even though the next endpoint might
			// answer: the caller must see it.
			return err
		case errors.Is(err, ErrNotFound):
			notFound, nfErr = append(notFound, ep), err
			continue
		case endpointFailure(err):
			v.set.fail(ep, err)
		case v.set.isDown(ep), errors.As(err, &retry):
		case (errors.Is(err, ErrStaleAnswer) || errors.Is(err, ErrUnverified)) && v.set.othersUp(ep, notFound):
			// A refused answer: the next endpoint may hold a fresh,
			// verifiable one (a liar listed first must not freeze the
			// node).
			v.set.refuse(ep, err)
		default:
			return err
		}
		errs = append(errs, err)
	}
	if nfErr != nil {
		// Every query endpoint that answered said "not found".
		return nfErr
	}
	if len(errs) == 0 {
		return v.set.noneUp()
	}
	return fmt.Errorf("%w: %w", ErrNoEndpoint, errors.Join(errs...))
}

// waitHeight waits until ep has committed height h, checking that it
// serves the chain.
func (v *Verifier) waitHeight(ctx context.Context, ep *endpoint, h int64) error {
	t := time.NewTicker(v.cfg.Poll)
	defer t.Stop()
	for {
		st, err := statusOf(ctx, ep)
		if err != nil {
			return err
		}
		if st.NodeInfo.Network != v.set.chainID {
			return wrongChain(ep, st.NodeInfo.Network, v.set.chainID)
		}
		if st.SyncInfo.LatestBlockHeight >= h {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// verifyHeader verifies header h, got from ep, with a light client over
// the trusted store whose witnesses are the other endpoints that are up
// and have reached h. A light client is made for each verification, so a
// witness that failed once is not lost for good.
//
// When no other endpoint is up although others are configured, ep is its
// own witness and h is verified over the unwitnessed store instead: an
// in-memory copy of the trusted store's newest header that then collects
// the headers ep alone vouched for. They are used, but never written to
// the trusted store; the first verification with a witness goes back to
// the trusted store, is cross-checked from its newest header, and
// discards the copy (as does a fork or another primary). persisted
// reports whether h was verified over the trusted store.
func (v *Verifier) verifyHeader(ctx context.Context, ep *endpoint, h int64) (lb *types.LightBlock, persisted bool, err error) {
	ws, alone := v.witnessProviders(ctx, ep, h)
	v.lcMu.Lock()
	defer v.lcMu.Unlock()
	store := v.store
	switch {
	case !alone || len(v.set.eps) == 1:
		v.unwitnessed, v.unwitnessedBy = nil, nil
	case v.unwitnessed != nil && v.unwitnessedBy == ep:
		store = v.unwitnessed
	default:
		if store, err = v.copyNewest(); err != nil {
			return nil, false, err
		}
		v.unwitnessed, v.unwitnessedBy = store, ep
	}
	lc, err := light.NewClientFromTrustedStore(v.set.chainID, v.cfg.TrustPeriod, v.set.provider(ep), ws, store, v.lightOptions()...)
	if err != nil {
		return nil, false, fmt.Errorf("pki: light client: %w", err)
	}
	lb, err = lc.VerifyLightBlockAtHeight(ctx, h, time.Now())
	if err != nil {
		err = v.lightError(ctx, ep, h, err)
		if errors.Is(err, ErrFork) {
			v.unwitnessed, v.unwitnessedBy = nil, nil
		}
		return nil, false, err
	}
	return lb, store == v.store, nil
}

// copyNewest returns an in-memory light store holding the trusted
// store's newest header. v.lcMu is held.
func (v *Verifier) copyNewest() (lightstore.Store, error) {
	last, err := v.store.LastLightBlockHeight()
	if err != nil {
		return nil, fmt.Errorf("pki: trusted store: %w", err)
	}
	lb, err := v.store.LightBlock(last)
	if err != nil {
		return nil, fmt.Errorf("pki: trusted store: %w", err)
	}
	mem := lightStore(dbm.NewMemDB(), v.set.chainID)
	if err := mem.SaveLightBlock(lb); err != nil {
		return nil, fmt.Errorf("pki: unwitnessed store: %w", err)
	}
	return mem, nil
}

func (v *Verifier) lightOptions() []light.Option {
	return []light.Option{
		light.Logger(cmtLogger{v.cfg.Logger.With("part", "light")}),
		light.MaxClockDrift(maxClockDrift), light.MaxBlockLag(maxBlockLag),
	}
}

// witnessProviders returns the witnesses of a verification of height h
// from primary: the other endpoints that are up and reach h within
// witnessLag (all that are up if none does), or primary itself when no
// other is up, since the light client needs one (it then detects no
// fork); alone reports that last case.
func (v *Verifier) witnessProviders(ctx context.Context, primary *endpoint, h int64) (ws []provider.Provider, alone bool) {
	up := v.set.witnesses(primary)
	if len(up) == 0 {
		return []provider.Provider{v.set.provider(primary)}, true
	}
	ready := make([]bool, len(up))
	var wg sync.WaitGroup
	for i, w := range up {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, witnessLag)
			defer cancel()
			err := v.waitHeight(wctx, w, h)
			if endpointFailure(err) && ctx.Err() == nil && wctx.Err() == nil {
				v.set.fail(w, err)
			}
			ready[i] = err == nil
		}()
	}
	wg.Wait()
	var out, all []provider.Provider
	for i, w := range up {
		if v.set.isDown(w) {
			continue
		}
		all = append(all, v.set.provider(w))
		if ready[i] {
			out = append(out, v.set.provider(w))
		}
	}
	switch {
	case len(out) > 0:
		return out, false
	case len(all) > 0:
		return all, false
	}
	return []provider.Provider{v.set.provider(primary)}, true
}

// lightError classifies an error of the light client verifying height h
// from ep.
func (v *Verifier) lightError(ctx context.Context, ep *endpoint, h int64, err error) error {
	var (
		conflict light.ErrConflictingHeaders
		prio     light.ErrProposerPrioritiesDiverge
		expired  light.ErrOldHeaderExpired
	)
	switch {
	case ctx.Err() != nil:
		return err
	case errors.Is(err, light.ErrLightClientAttack), errors.As(err, &conflict), errors.As(err, &prio):
		return v.fork(ctx, ep, h, err)
	case errors.As(err, &expired):
		last, _ := v.store.LastLightBlockHeight()
		if lb, serr := v.store.LightBlock(last); serr == nil {
			return v.trustExpired(lb.Height, lb.Time)
		}
		return fmt.Errorf("%w: %w", ErrTrustExpired, err)
	case errors.Is(err, light.ErrNoWitnesses), errors.Is(err, light.ErrFailedHeaderCrossReferencing):
		return &retryError{fmt.Errorf("pki: light client at height %d via %s: %w", h, ep.url, err)}
	case v.set.isDown(ep):
		return &endpointError{fmt.Errorf("pki: light client at height %d via %s: %w", h, ep.url, err)}
	}
	return fmt.Errorf("%w: light client at height %d via %s: %w", ErrUnverified, h, ep.url, err)
}

// fork handles light-client attack evidence at height h: the endpoints
// whose header at the newest trusted height differs from the store's are
// dropped (ep if none does), an error is logged naming the primary and
// the witnesses, and the answer is refused.
func (v *Verifier) fork(ctx context.Context, ep *endpoint, h int64, cause error) error {
	others := v.set.witnesses(ep)
	names := make([]string, len(others))
	for i, w := range others {
		names[i] = w.url
	}
	var dropped []string
	if last, err := v.store.LastLightBlockHeight(); err == nil && last > 0 {
		if trusted, err := v.store.LightBlock(last); err == nil {
			for _, e := range append([]*endpoint{ep}, others...) {
				lctx, cancel := context.WithTimeout(ctx, endpointTimeout)
				lb, err := lighthttp.NewWithClient(v.set.chainID, e.rpc).LightBlock(lctx, last)
				cancel()
				if err == nil && !bytes.Equal(lb.Hash(), trusted.Hash()) {
					dropped = append(dropped, e.url)
					v.set.drop(e, fmt.Errorf("%w: its header %d is not the trusted one", ErrFork, last))
				}
			}
		}
	}
	if len(dropped) == 0 {
		dropped = []string{ep.url}
		v.set.drop(ep, fmt.Errorf("%w: primary of a conflicting header at height %d", ErrFork, h))
	}
	// Answers accepted on headers that never reached the trusted store
	// (unwitnessed) no longer raise the floor of the height rule.
	v.mu.Lock()
	if v.accepted.height > v.stored.height {
		v.accepted = v.stored
	}
	v.mu.Unlock()
	v.cfg.Logger.Error("pki: FORK: a witness holds a validly signed header that conflicts with the primary's; answer refused",
		"height", h, "primary", ep.url, "witnesses", strings.Join(names, ","), "dropped", strings.Join(dropped, ","), "err", cause)
	return fmt.Errorf("%w at height %d between primary %s and witnesses %s (dropped %s): %w",
		ErrFork, h, ep.url, strings.Join(names, ","), strings.Join(dropped, ","), cause)
}
