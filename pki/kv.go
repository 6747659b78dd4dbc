package pki

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"strings"
)

// kv is the application state: an in-memory key-value map, loaded from the
// store when the application starts, and the writes of the block (or the
// mempool check) under way on top of it. The state machine reads and
// writes only through a kv, so the same code runs in unit tests, in
// CheckTx (on a throw-away kv) and in FinalizeBlock.
type kv struct {
	base   map[string][]byte
	writes map[string][]byte // a nil value deletes the key
}

func newKV(base map[string][]byte) *kv {
	return &kv{base: base, writes: make(map[string][]byte)}
}

func (s *kv) get(k string) ([]byte, bool) {
	if v, ok := s.writes[k]; ok {
		return v, v != nil
	}
	v, ok := s.base[k]
	return v, ok
}

func (s *kv) set(k string, v []byte) {
	if v == nil {
		v = []byte{}
	}
	s.writes[k] = v
}

func (s *kv) del(k string) {
	if _, ok := s.base[k]; ok {
		s.writes[k] = nil
		return
	}
	delete(s.writes, k)
}

// scan calls fn on every live key with prefix, in byte order.
func (s *kv) scan(prefix string, fn func(k string, v []byte)) {
	var keys []string
	for k := range s.base {
		if strings.HasPrefix(k, prefix) {
			if _, shadowed := s.writes[k]; !shadowed {
				keys = append(keys, k)
			}
		}
	}
	for k, v := range s.writes {
		if v != nil && strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, _ := s.get(k)
		fn(k, v)
	}
}

// changes returns the pending writes in key order.
func (s *kv) changes() []string {
	return slices.Sorted(maps.Keys(s.writes))
}

// digest hashes the pending writes in key order: each as key length, key,
// a flag (0 deleted, 1 set) and, when set, value length and value.
func (s *kv) digest() [32]byte {
	h := sha256.New()
	var n [4]byte
	for _, k := range s.changes() {
		binary.BigEndian.PutUint32(n[:], uint32(len(k)))
		h.Write(n[:])
		h.Write([]byte(k))
		v := s.writes[k]
		if v == nil {
			h.Write([]byte{0})
			continue
		}
		h.Write([]byte{1})
		binary.BigEndian.PutUint32(n[:], uint32(len(v)))
		h.Write(n[:])
		h.Write(v)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// apply folds the pending writes into base and clears them.
func (s *kv) apply() {
	for k, v := range s.writes {
		if v == nil {
			delete(s.base, k)
		} else {
			s.base[k] = v
		}
	}
	clear(s.writes)
}
