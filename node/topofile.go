package node

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/strata-mix/strata/pki"
	"github.com/strata-mix/strata/relay"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// StaticTopology is a topology file: what the PKI will publish each epoch,
// written by hand (or by `strata keygen` entries) until the PKI serves it.
// docs/relay.md shows an example.
type StaticTopology struct {
	Epoch      uint64         `json:"epoch"`
	Beacon     string         `json:"beacon,omitempty"` // 64 hex digits; zero if absent
	Successors int            `json:"successors,omitempty"`
	DelayMean  string         `json:"delay_mean"` // Go duration, e.g. "50ms"
	LoopRate   float64        `json:"loop_rate"`  // relay loops per second (λM)
	Layers     [][]string     `json:"layers"`     // node ids (hex), stratum by stratum
	Nodes      []TopologyNode `json:"nodes"`
}

// TopologyNode is one node of a topology file, as `strata keygen` prints it.
type TopologyNode struct {
	ID          string            `json:"id,omitempty"` // hex node id; checked against the key if given
	IdentityKey string            `json:"identity_key"` // hex Ed25519 public key
	Addrs       []string          `json:"addrs"`
	MixKeys     map[string]string `json:"mix_keys"` // epoch → hex X25519 public key
}

// Epoch is one epoch of a topology, decoded and checked.
type Epoch struct {
	Number  uint64
	Delay   sphinx.DelayPolicy
	View    *relay.View
	Peers   []transport.PeerInfo
	MixKeys map[sphinx.NodeID]sphinx.PublicKey
}

// LoadStaticTopology reads and checks a topology file.
func LoadStaticTopology(path string) (*Epoch, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: topology: %w", err)
	}
	var t StaticTopology
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("node: topology %s: %w", path, err)
	}
	return t.decode()
}

func (t *StaticTopology) decode() (*Epoch, error) {
	e := &Epoch{Number: t.Epoch, MixKeys: map[sphinx.NodeID]sphinx.PublicKey{}}
	mean, err := time.ParseDuration(t.DelayMean)
	if err != nil || mean < 0 {
		return nil, fmt.Errorf("node: topology: delay_mean %q: want a duration like 50ms", t.DelayMean)
	}
	e.Delay = sphinx.DelayPolicy{Mean: mean}
	if t.LoopRate < 0 {
		return nil, fmt.Errorf("node: topology: negative loop_rate")
	}
	var beacon [32]byte
	if t.Beacon != "" {
		raw, err := hex.DecodeString(t.Beacon)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("node: topology: beacon is not 64 hex digits")
		}
		copy(beacon[:], raw)
	}
	epochKey := strconv.FormatUint(t.Epoch, 10)
	for i, n := range t.Nodes {
		pub, err := hex.DecodeString(n.IdentityKey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("node: topology: node %d: identity_key is not 64 hex digits", i)
		}
		id := sphinx.NodeID(transport.NodeIDFromPublicKey(pub))
		if n.ID != "" && n.ID != transport.NodeID(id).Hex() {
			return nil, fmt.Errorf("node: topology: node %d: id %s is not the hash of its identity key", i, n.ID)
		}
		e.Peers = append(e.Peers, transport.PeerInfo{PublicKey: pub, Addrs: n.Addrs})
		mk, ok := n.MixKeys[epochKey]
		if !ok {
			continue
		}
		raw, err := hex.DecodeString(mk)
		if err != nil || len(raw) != sphinx.KeySize {
			return nil, fmt.Errorf("node: topology: node %d: mix key of epoch %s is not 64 hex digits", i, epochKey)
		}
		if err := sphinx.PublicKey(raw).Validate(); err != nil {
			return nil, fmt.Errorf("node: topology: node %d: %w", i, err)
		}
		e.MixKeys[id] = sphinx.PublicKey(raw)
	}
	layers := make([][]sphinx.NodeID, len(t.Layers))
	for i, l := range t.Layers {
		for _, s := range l {
			id, err := transport.ParseNodeID(s)
			if err != nil {
				return nil, fmt.Errorf("node: topology: layer %d: %w", i, err)
			}
			if _, ok := e.MixKeys[sphinx.NodeID(id)]; !ok {
				return nil, fmt.Errorf("node: topology: layer %d: relay %v has no node entry with a mix key for epoch %d", i, id, t.Epoch)
			}
			layers[i] = append(layers[i], sphinx.NodeID(id))
		}
	}
	k := t.Successors
	if k == 0 {
		k = pki.DefaultSuccessors
	}
	g, err := pki.NewGraphFromLayers(layers, k, beacon)
	if err != nil {
		return nil, fmt.Errorf("node: topology: %w", err)
	}
	e.View = &relay.View{Epoch: t.Epoch, Graph: g, MixKeys: e.MixKeys, Delay: e.Delay, LoopRate: t.LoopRate}
	return e, nil
}
