package sphinx

import (
	"crypto/sha256"
	"hash"
	"sync"
)

// Format builds and processes the packets of one [Geometry]. It holds only
// constants and pools of scratch space, so one Format serves any number of
// goroutines.
type Format struct {
	g       Geometry
	field   *scalarField
	scratch sync.Pool // of *scratch
}

// scratch is the per-call working space of Unwrap. Everything handed to a
// hash.Hash lives here rather than on the stack, where it would escape and be
// allocated on every call.
type scratch struct {
	h      hash.Hash
	secret [32]byte
	keys   hopKeys
	sum    [sha256.Size]byte
	stream []byte // RoutingSize + RoutingInfoSize bytes of header key stream
}

// NewFormat returns a Format for g.
func NewFormat(g Geometry) (*Format, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	f := &Format{g: g, field: newScalarField()}
	streamLen := g.RoutingSize() + RoutingInfoSize
	f.scratch.New = func() any {
		return &scratch{h: sha256.New(), stream: make([]byte, streamLen)}
	}
	return f, nil
}

// Geometry returns the geometry of f's packets.
func (f *Format) Geometry() Geometry { return f.g }

func (f *Format) getScratch() *scratch   { return f.scratch.Get().(*scratch) }
func (f *Format) putScratch(sc *scratch) { f.scratch.Put(sc) }
