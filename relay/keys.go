package relay

import (
	"errors"
	"sort"
	"sync/atomic"

	"github.com/strata-mix/strata/sphinx"
)

// EpochKey is a relay's mix key for one key epoch.
type EpochKey struct {
	Epoch uint64
	Key   *sphinx.PrivateKey
}

// Keyring holds the mix keys a relay accepts packets under: the current
// epoch's first, then the others (the previous epoch's during its grace
// period, the next epoch's just before it starts). Readers never lock; Set
// swaps the whole set.
type Keyring struct {
	keys atomic.Pointer[[]EpochKey]
}

// NewKeyring returns a keyring holding keys, current first.
func NewKeyring(current uint64, keys ...EpochKey) (*Keyring, error) {
	k := &Keyring{}
	return k, k.Set(current, keys...)
}

// Set replaces the keys; current names the epoch tried first.
func (k *Keyring) Set(current uint64, keys ...EpochKey) error {
	if len(keys) == 0 {
		return errors.New("relay: keyring needs at least one key")
	}
	ordered := append([]EpochKey(nil), keys...)
	sort.SliceStable(ordered, func(i, j int) bool {
		ci, cj := ordered[i].Epoch == current, ordered[j].Epoch == current
		if ci != cj {
			return ci
		}
		return ordered[i].Epoch > ordered[j].Epoch
	})
	for _, e := range ordered {
		if e.Key == nil {
			return errors.New("relay: keyring: nil key")
		}
	}
	k.keys.Store(&ordered)
	return nil
}

// Current returns the epoch tried first.
func (k *Keyring) Current() uint64 { return (*k.keys.Load())[0].Epoch }

// unwrap processes pkt with the first key it was made for and returns that
// key's epoch. A failed MAC leaves pkt untouched, so trying the next key is
// safe.
func (k *Keyring) unwrap(f *sphinx.Format, d sphinx.DelayPolicy, pkt []byte, res *sphinx.Result) (uint64, error) {
	var err error
	for _, e := range *k.keys.Load() {
		if err = f.Unwrap(e.Key, d, pkt, res); !errors.Is(err, sphinx.ErrMAC) {
			return e.Epoch, err
		}
	}
	return 0, err
}
