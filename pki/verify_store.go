package pki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cockroachdb/pebble"
	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/light"
	lightstore "github.com/cometbft/cometbft/light/store"
	lightdb "github.com/cometbft/cometbft/light/store/db"
)

// The trusted store is a pebble database in StoreDir ("light.db"): the
// chain id under keyStoreChainID, and the light client's light blocks
// (CometBFT's light/store/db layout) under the prefix "lc/". Every write
// is synced.
var keyStoreChainID = []byte("strata/chain-id")

func openTrustDB(dir string) (dbm.DB, error) {
	if dir == "" {
		return dbm.NewMemDB(), nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: trusted store: %w", err)
	}
	db, err := dbm.NewPebbleDBWithOpts("light", dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		return nil, fmt.Errorf("pki: trusted store %s: %w", dir, err)
	}
	return db, nil
}

func lightStore(db dbm.DB, chainID string) lightstore.Store {
	return lightdb.New(dbm.NewPrefixDB(db, []byte("lc/")), chainID)
}

// trustExpired is the error of a verifier whose newest trusted header is
// older than the trust period.
func (v *Verifier) trustExpired(height int64, t time.Time) error {
	where := "pass it as the trust root"
	if v.cfg.StoreDir != "" {
		where = fmt.Sprintf("pass it as the trust root (or remove %s to start from the configured one)", v.cfg.StoreDir)
	}
	return fmt.Errorf("%w: the newest trusted header (height %d, time %s) is older than the trust period %v, so nothing can be verified from it; "+
		"get a fresh trust root (a recent height and hash from a validator operator: `strata validator start` prints one) and %s",
		ErrTrustExpired, height, t.UTC().Format(time.RFC3339), v.cfg.TrustPeriod, where)
}

func (v *Verifier) expired(t time.Time) bool {
	return !t.Add(v.cfg.TrustPeriod).After(time.Now())
}

// initTrust sets the light client's trusted header: the store's newest,
// or the configured root (see docs/pki.md, "Verifying what the chain
// says", for the rules).
func (v *Verifier) initTrust(ctx context.Context) error {
	root := v.cfg.TrustHeight > 0 && len(v.cfg.TrustHash) > 0
	last, err := v.store.LastLightBlockHeight()
	if err != nil {
		return fmt.Errorf("pki: trusted store: %w", err)
	}
	if last > 0 {
		lb, err := v.store.LightBlock(last)
		if err != nil {
			return fmt.Errorf("pki: trusted store: %w", err)
		}
		expired := v.expired(lb.Time)
		switch {
		case root && v.cfg.TrustHeight <= last:
			if have, err := v.store.LightBlock(v.cfg.TrustHeight); err == nil && !bytes.Equal(have.Hash(), v.cfg.TrustHash) {
				return fmt.Errorf("pki: trust root %d %X conflicts with the trusted store, which holds %X at that height (remove %s only if the root is right)",
					v.cfg.TrustHeight, v.cfg.TrustHash, have.Hash(), v.cfg.StoreDir)
			}
			if expired {
				return v.trustExpired(lb.Height, lb.Time)
			}
			return nil
		case root && !expired:
			// A newer root must follow from the stored header.
			return v.withEndpoint(ctx, func(ep *endpoint) error {
				if err := v.waitHeight(ctx, ep, v.cfg.TrustHeight); err != nil {
					return err
				}
				got, _, err := v.verifyHeader(ctx, ep, v.cfg.TrustHeight)
				if err != nil {
					return fmt.Errorf("pki: trust root at height %d: %w", v.cfg.TrustHeight, err)
				}
				if !bytes.Equal(got.Hash(), v.cfg.TrustHash) {
					return fmt.Errorf("pki: trust root %d %X conflicts with the chain verified from the trusted store, which has %X at that height",
						v.cfg.TrustHeight, v.cfg.TrustHash, got.Hash())
				}
				return nil
			})
		case root:
			// The store expired; the newer root replaces it.
			if err := v.store.Prune(0); err != nil {
				return fmt.Errorf("pki: trusted store: %w", err)
			}
		case expired:
			return v.trustExpired(lb.Height, lb.Time)
		default:
			return nil
		}
	}
	if !root {
		return errors.New("pki: no root of trust: set the trust height and hash (a validator operator has them: `strata validator start` prints them), or a store directory that holds a trusted header")
	}
	return v.withEndpoint(ctx, func(ep *endpoint) error {
		lb, err := v.set.provider(ep).LightBlock(ctx, v.cfg.TrustHeight)
		if err != nil {
			return fmt.Errorf("pki: trust root at height %d from %s: %w", v.cfg.TrustHeight, ep.url, err)
		}
		if !bytes.Equal(lb.Hash(), v.cfg.TrustHash) {
			return fmt.Errorf("%w: %s has %X at the trust root's height %d, not the root's hash %X", ErrUnverified, ep.url, lb.Hash(), lb.Height, v.cfg.TrustHash)
		}
		if v.expired(lb.Time) {
			return v.trustExpired(lb.Height, lb.Time)
		}
		ws, _ := v.witnessProviders(ctx, ep, v.cfg.TrustHeight)
		_, err = light.NewClient(ctx, v.set.chainID,
			light.TrustOptions{Period: v.cfg.TrustPeriod, Height: v.cfg.TrustHeight, Hash: v.cfg.TrustHash},
			v.set.provider(ep), ws, v.store, v.lightOptions()...)
		if err != nil {
			return v.lightError(ctx, ep, v.cfg.TrustHeight, err)
		}
		return nil
	})
}

// quietPebble drops the line pebble logs at every open of a store
// ("WAL file … replayed …") and passes on everything else.
type quietPebble struct{}

func (quietPebble) Infof(format string, args ...any) {
	if !strings.Contains(format, "replayed") {
		pebble.DefaultLogger.Infof(format, args...)
	}
}

func (quietPebble) Fatalf(format string, args ...any) { pebble.DefaultLogger.Fatalf(format, args...) }
