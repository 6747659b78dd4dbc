package pki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	abci "github.com/cometbft/cometbft/abci/types"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
)

// Chain is what nodes and clients need of the chain: its id, queries of
// the last committed state, and a way into the mempool. A ValidatorNode
// is one (in-process); RPCChain reaches a validator over CometBFT RPC.
// Neither proves its answers: Verifier checks topology documents against
// the chain's headers.
type Chain interface {
	ChainID() string
	// Query returns the value at path and the height it was read at.
	Query(ctx context.Context, path string) ([]byte, int64, error)
	// BroadcastTx returns the CheckTx verdict; a refusal is a *TxError.
	BroadcastTx(ctx context.Context, tx []byte) error
}

// ErrNotFound is wrapped by a query error for something the state lacks.
var ErrNotFound = errors.New("pki: not found")

func queryError(path string, code uint32, log string) error {
	if code == QueryCodeNotFound {
		return fmt.Errorf("%w: %s: %s", ErrNotFound, path, log)
	}
	return fmt.Errorf("pki: query %s: code %d: %s", path, code, log)
}

// Query reads the node's own application.
func (n *ValidatorNode) Query(ctx context.Context, path string) ([]byte, int64, error) {
	res, err := n.app.Query(ctx, &abci.QueryRequest{Path: path})
	if err != nil {
		return nil, 0, err
	}
	if res.Code != 0 {
		return nil, res.Height, queryError(path, res.Code, res.Log)
	}
	return res.Value, res.Height, nil
}

// RPCChain is a Chain reached over validators' CometBFT RPC endpoints.
// Queries and broadcasts go to the first endpoint in order of preference
// that is up; one that fails to answer (no connection, timeout, another
// chain) is skipped, with one warning per outage, and used again once a
// status probe (every 2 s while it is down) gets an answer.
type RPCChain struct {
	set *endpointSet
}

// DialChain connects to the RPC endpoint ("http://127.0.0.1:26657") and
// learns the chain id from it.
func DialChain(ctx context.Context, endpoint string) (*RPCChain, error) {
	set, err := newEndpointSet([]string{endpoint}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	st, err := statusOf(ctx, set.eps[0])
	if err != nil {
		return nil, err
	}
	set.chainID = st.NodeInfo.Network
	return &RPCChain{set: set}, nil
}

// ChainID is the chain's id (as the first endpoint to answer reported it,
// or as the verifier's trusted store holds it).
func (c *RPCChain) ChainID() string { return c.set.chainID }

// Query runs an ABCI query at the latest height.
func (c *RPCChain) Query(ctx context.Context, path string) ([]byte, int64, error) {
	var v []byte
	var h int64
	err := c.each(ctx, func(ep *endpoint) (err error) {
		v, h, _, err = queryProof(ctx, ep, path, false)
		return err
	})
	return v, h, err
}

// each runs do on the endpoint in use, and on the next ones while the
// endpoint in use fails.
func (c *RPCChain) each(ctx context.Context, do func(*endpoint) error) error {
	var errs []error
	for range c.set.eps {
		ep := c.set.pick()
		if ep == nil {
			break
		}
		err := do(ep)
		if !endpointFailure(err) {
			return err
		}
		c.set.fail(ep, err)
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return c.set.noneUp()
	}
	return fmt.Errorf("%w: %w", ErrNoEndpoint, errors.Join(errs...))
}

func queryProof(ctx context.Context, ep *endpoint, path string, prove bool) ([]byte, int64, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, endpointTimeout)
	defer cancel()
	res, err := ep.rpc.ABCIQueryWithOptions(rctx, path, nil, rpcclient.ABCIQueryOptions{Prove: prove})
	if err != nil {
		return nil, 0, nil, rpcError(ctx, ep, "query "+path, err)
	}
	r := res.Response
	if r.Code != 0 {
		return nil, r.Height, nil, queryError(path, r.Code, r.Log)
	}
	var proof []byte
	if r.ProofOps != nil {
		for _, op := range r.ProofOps.Ops {
			if op.Type == ProofOpType {
				proof = op.Data
			}
		}
	}
	return r.Value, r.Height, proof, nil
}

// BroadcastTx submits tx and waits for CheckTx.
func (c *RPCChain) BroadcastTx(ctx context.Context, tx []byte) error {
	return c.each(ctx, func(ep *endpoint) error {
		bctx, cancel := context.WithTimeout(ctx, endpointTimeout)
		defer cancel()
		res, err := ep.rpc.BroadcastTxSync(bctx, tx)
		if err != nil {
			// CometBFT v1 reports a CheckTx refusal as an error.
			if txe := asTxError(err); txe != err {
				return txe
			}
			return rpcError(ctx, ep, "broadcast", err)
		}
		if res.Code != 0 {
			return &TxError{Code: Code(res.Code), Msg: res.Log}
		}
		return nil
	})
}
