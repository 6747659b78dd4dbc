package pki

import (
	"context"
	"errors"
	"fmt"

	abci "github.com/cometbft/cometbft/abci/types"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
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

// RPCChain is a Chain reached over a validator's CometBFT RPC endpoint.
type RPCChain struct {
	rpc     *rpchttp.HTTP
	chainID string
}

// DialChain connects to the RPC endpoint ("http://127.0.0.1:26657") and
// learns the chain id from it.
func DialChain(ctx context.Context, endpoint string) (*RPCChain, error) {
	c, err := rpchttp.New(endpoint)
	if err != nil {
		return nil, fmt.Errorf("pki: rpc %s: %w", endpoint, err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("pki: rpc %s: status: %w", endpoint, err)
	}
	return &RPCChain{rpc: c, chainID: st.NodeInfo.Network}, nil
}

// ChainID is the chain's id as the endpoint reports it.
func (c *RPCChain) ChainID() string { return c.chainID }

// Query runs an ABCI query at the latest height.
func (c *RPCChain) Query(ctx context.Context, path string) ([]byte, int64, error) {
	v, h, _, err := c.queryProof(ctx, path, false)
	return v, h, err
}

func (c *RPCChain) queryProof(ctx context.Context, path string, prove bool) ([]byte, int64, []byte, error) {
	res, err := c.rpc.ABCIQueryWithOptions(ctx, path, nil, rpcclient.ABCIQueryOptions{Prove: prove})
	if err != nil {
		return nil, 0, nil, fmt.Errorf("pki: query %s: %w", path, err)
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
	res, err := c.rpc.BroadcastTxSync(ctx, tx)
	if err != nil {
		return fmt.Errorf("pki: broadcast: %w", err)
	}
	if res.Code != 0 {
		return &TxError{Code: Code(res.Code), Msg: res.Log}
	}
	return nil
}
