package pki

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	abci "github.com/cometbft/cometbft/abci/types"
	cmtcrypto "github.com/cometbft/cometbft/api/cometbft/crypto/v1"

	"github.com/strata-mix/strata/sphinx"
)

// Query paths. Answers are about the last committed height; asking for an
// older height is an error, since the application keeps no history.
const (
	// QueryEpoch answers the current EpochInfo (binary, provable).
	QueryEpoch = "/epoch"
	// QueryTopology + "/<epoch>" answers that epoch's topology document
	// (binary, provable): the current epoch's, or the next one's once it
	// has frozen.
	QueryTopology = "/topology"
	// QueryNode + "/<64 hex digits>" answers a NodeView as JSON.
	QueryNode = "/node"
	// QueryNodes answers every registered node as a JSON list of NodeView.
	QueryNodes = "/nodes"
	// QueryParams answers the network parameters as JSON.
	QueryParams = "/params"
	// QueryAdmission answers the price of an intention now, an Admission
	// as JSON (not provable).
	QueryAdmission = "/admission"
)

// Query result codes, beside the transaction codes.
const (
	QueryCodeNotFound   uint32 = 100
	QueryCodeBadRequest uint32 = 101
)

// NodeView is a registered node as the node queries show it.
type NodeView struct {
	ID         string   `json:"id"`
	Key        string   `json:"key"`
	Role       string   `json:"role"`
	Status     string   `json:"status"`
	Registered uint64   `json:"registered"`
	Admitted   uint64   `json:"admitted"`
	LastSeen   uint64   `json:"last_seen"`
	Addrs      []string `json:"addrs"`
	// Attesters are the validators (hex consensus keys) that attested the
	// node in the current epoch.
	Attesters []string `json:"attesters"`
	// VRFEpoch is the epoch whose beacon the relay's latest VRF output is
	// on; HasVRF says whether there is one.
	VRFEpoch uint64 `json:"vrf_epoch"`
	HasVRF   bool   `json:"has_vrf"`
	// KeyEpochs are the epochs for which the node's mix keys are on chain.
	KeyEpochs []uint64 `json:"key_epochs"`
}

// Query answers the paths above.
func (a *App) Query(_ context.Context, req *abci.QueryRequest) (*abci.QueryResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res := &abci.QueryResponse{Height: a.last.height, Codespace: Codespace}
	fail := func(code uint32, format string, args ...any) (*abci.QueryResponse, error) {
		res.Code = code
		res.Log = fmt.Sprintf(format, args...)
		return res, nil
	}
	if req.Height != 0 && req.Height != a.last.height {
		return fail(QueryCodeBadRequest, "height %d: only the last committed height %d can be queried", req.Height, a.last.height)
	}
	st := state{kv: newKV(a.base)}
	path, arg, _ := strings.Cut(strings.TrimPrefix(req.Path, "/"), "/")
	var (
		value []byte
		slots []int
	)
	switch "/" + path {
	case QueryEpoch:
		v, ok := st.kv.get(keyEpoch)
		if !ok {
			return fail(QueryCodeNotFound, "no epoch has opened")
		}
		value, slots = v, []int{1}
	case QueryTopology:
		e, err := strconv.ParseUint(arg, 10, 64)
		if err != nil {
			return fail(QueryCodeBadRequest, "topology epoch %q", arg)
		}
		doc, ok := st.topology(e)
		if !ok {
			return fail(QueryCodeNotFound, "no topology for epoch %d at height %d", e, a.last.height)
		}
		value, slots = doc, []int{2, 3}
	case QueryNode:
		raw, err := hex.DecodeString(arg)
		if err != nil || len(raw) != len(sphinx.NodeID{}) {
			return fail(QueryCodeBadRequest, "node id %q", arg)
		}
		n, err := st.node(sphinx.NodeID(raw))
		if err != nil {
			return nil, err
		}
		if n == nil {
			return fail(QueryCodeNotFound, "node %s is not registered", arg)
		}
		v, err := json.Marshal(view(st, n))
		if err != nil {
			return nil, err
		}
		value = v
	case QueryNodes:
		nodes, err := st.nodes()
		if err != nil {
			return nil, err
		}
		views := make([]NodeView, len(nodes))
		for i, n := range nodes {
			views[i] = view(st, n)
		}
		v, err := json.Marshal(views)
		if err != nil {
			return nil, err
		}
		value = v
	case QueryParams:
		p, err := st.params()
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		value = v
	case QueryAdmission:
		adm, err := admissionOf(st)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(adm)
		if err != nil {
			return nil, err
		}
		value = v
	default:
		return fail(QueryCodeBadRequest, "unknown path %q", req.Path)
	}
	res.Value = value
	if req.Prove && slots != nil {
		l, err := leaves(st, a.last.chain)
		if err != nil {
			return nil, err
		}
		res.ProofOps = &cmtcrypto.ProofOps{Ops: []cmtcrypto.ProofOp{{Type: ProofOpType, Key: []byte(req.Path), Data: encodeLeaves(l)}}}
	}
	return res, nil
}

func view(st state, n *Registration) NodeView {
	v := NodeView{
		ID: hex.EncodeToString(n.ID[:]), Key: hex.EncodeToString(n.Key[:]),
		Role: n.Role.String(), Status: n.Status.String(),
		Registered: n.Registered, Admitted: n.Admitted, LastSeen: n.LastSeen,
		Addrs: n.Addrs, Attesters: []string{}, KeyEpochs: []uint64{},
	}
	ei, err := st.epoch()
	if err == nil && ei.Open {
		for _, a := range st.attesters(ei.Epoch, n.ID) {
			v.Attesters = append(v.Attesters, hex.EncodeToString(a[:]))
		}
	}
	v.VRFEpoch, _, v.HasVRF = st.vrf(n.ID)
	// Keys live from the previous epoch to the end of the window.
	if p, err := st.params(); err == nil {
		for e := max(ei.Epoch, 1) - 1; e <= ei.Epoch+p.KeysAhead; e++ {
			if _, ok := st.mixKey(n.ID, e); ok {
				v.KeyEpochs = append(v.KeyEpochs, e)
			}
		}
	}
	return v
}

// DecodeEpochInfo parses the answer of QueryEpoch.
func DecodeEpochInfo(b []byte) (EpochInfo, error) {
	ei, err := decodeEpochInfo(b)
	if err != nil {
		return ei, fmt.Errorf("epoch info: %w", err)
	}
	return ei, nil
}
