package node

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/strata-mix/strata/transport"
)

// Keygen makes (or loads, if the file exists) the identity key at
// identityPath and the mix keys for epochs first…last in dataDir, and
// returns the node's entry for a topology file.
func Keygen(identityPath, dataDir string, first, last uint64, addrs []string) (*TopologyNode, error) {
	if last < first || last-first > 1000 {
		return nil, fmt.Errorf("node: keygen: bad epoch range %d-%d", first, last)
	}
	key, err := transport.LoadIdentity(identityPath)
	if errors.Is(err, os.ErrNotExist) {
		if key, err = transport.GenerateIdentity(); err == nil {
			err = transport.SaveIdentity(identityPath, key)
		}
	}
	if err != nil {
		return nil, err
	}
	n := &TopologyNode{
		ID:          transport.NodeIDFromPublicKey(key.Public().(ed25519.PublicKey)).Hex(),
		IdentityKey: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
		Addrs:       addrs,
		MixKeys:     map[string]string{},
	}
	if dataDir == "" {
		return n, nil
	}
	for e := first; e <= last; e++ {
		k, err := EnsureMixKey(dataDir, e)
		if err != nil {
			return nil, err
		}
		pub := k.Public()
		n.MixKeys[strconv.FormatUint(e, 10)] = hex.EncodeToString(pub[:])
	}
	return n, nil
}
