package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
)

// ReportedRoot is a candidate root of trust as RPC endpoints report it:
// nothing about it is verified.
type ReportedRoot struct {
	// Height and Hash (hex) are the latest block of From, the first
	// endpoint that answered.
	Height int64
	Hash   string
	From   string
	// Agree are the other endpoints that report the same block at Height;
	// Unasked those that could not be asked, with why.
	Agree   []string
	Unasked map[string]error
}

// ErrRootsDisagree is returned by ReportedTrustRoot when two endpoints
// report different blocks at the same height.
var ErrRootsDisagree = errors.New("node: the endpoints report different blocks at the same height")

// reportTimeout bounds each endpoint's answers to ReportedTrustRoot.
const reportTimeout = 10 * time.Second

// ReportedTrustRoot asks the first endpoint that answers for its latest
// block and every other endpoint for the block at that height. It is what
// `strata client init` shows (and trusts only with --trust-first-use): an
// endpoint that lies can report any block, so a root taken this way is
// only as good as the endpoints.
func ReportedTrustRoot(ctx context.Context, endpoints []string) (ReportedRoot, error) {
	r := ReportedRoot{Unasked: map[string]error{}}
	var want []byte
	for _, ep := range endpoints {
		// A black-holed endpoint costs at most reportTimeout, not the
		// caller's whole deadline.
		ctx, cancel := context.WithTimeout(ctx, reportTimeout)
		defer cancel()
		c, err := rpchttp.New(ep)
		if err != nil {
			r.Unasked[ep] = err
			continue
		}
		if want == nil {
			st, err := c.Status(ctx)
			if err != nil {
				r.Unasked[ep] = err
				continue
			}
			r.Height, r.From = st.SyncInfo.LatestBlockHeight, ep
		}
		h := r.Height
		b, err := c.Block(ctx, &h)
		if err != nil {
			if want == nil {
				r.Height, r.From = 0, ""
			}
			r.Unasked[ep] = err
			continue
		}
		got := []byte(b.BlockID.Hash)
		switch {
		case want == nil:
			want = got
			r.Hash = hex.EncodeToString(got)
		case bytes.Equal(got, want):
			r.Agree = append(r.Agree, ep)
		default:
			return r, fmt.Errorf("%w: %s says block %d is %x, %s says %x", ErrRootsDisagree, r.From, r.Height, want, ep, got)
		}
	}
	if want == nil {
		return r, fmt.Errorf("node: no RPC endpoint answered: %w", errors.Join(mapErrs(r.Unasked)...))
	}
	return r, nil
}

func mapErrs(m map[string]error) []error {
	var out []error
	for ep, err := range m {
		out = append(out, fmt.Errorf("%s: %w", ep, err))
	}
	return out
}

// ChatChain returns the chain section of the user in dir (chat.json).
func ChatChain(dir string) (ChainConfig, error) {
	s, err := readChatState(dir)
	return s.Chain, err
}

// SetChatChain changes the chain section of the user in dir (chat.json)
// with edit, which may change the endpoints or the root of trust; the
// result must be a valid chain section. The light client's store
// (<dir>/light) is kept: a user pointed at new endpoints goes on from the
// last header it verified. Run it while the user is not running (a
// running user writes chat.json too).
func SetChatChain(dir string, edit func(*ChainConfig) error) (ChainConfig, error) {
	s, err := readChatState(dir)
	if err != nil {
		return ChainConfig{}, err
	}
	if err := edit(&s.Chain); err != nil {
		return ChainConfig{}, err
	}
	if err := s.Chain.check(); err != nil {
		return ChainConfig{}, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return ChainConfig{}, err
	}
	if err := writeFileAtomic(filepath.Join(dir, chatStateFile), b); err != nil {
		return ChainConfig{}, fmt.Errorf("node: chat: %w", err)
	}
	return s.Chain, nil
}

func readChatState(dir string) (chatState, error) {
	var s chatState
	b, err := os.ReadFile(filepath.Join(dir, chatStateFile))
	if err != nil {
		return s, fmt.Errorf("node: chat: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("node: chat: %s: %w", chatStateFile, err)
	}
	return s, nil
}
