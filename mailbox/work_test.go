package mailbox

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/strata-mix/strata/sphinx"
)

// TestWorkBindsRequest: a proof verifies for its own request and mailbox at
// its difficulty only; a changed body, another mailbox, a longer or shorter
// nonce or a higher difficulty fail with ErrWork.
func TestWorkBindsRequest(t *testing.T) {
	var box, other ID
	box[0], other[0] = 1, 2
	signed := SignedBytes([]byte("a put request"))
	nonce, err := Work{Bits: 10}.Worker(context.Background(), box)(signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyWork(box, signed, nonce, 10); err != nil {
		t.Fatalf("own proof: %v", err)
	}
	got := WorkBits(box, signed, nonce)
	for name, err := range map[string]error{
		"short nonce":       VerifyWork(box, signed, nonce[:7], 0),
		"long nonce":        VerifyWork(box, signed, append(bytes.Clone(nonce), 0), 0),
		"higher difficulty": VerifyWork(box, signed, nonce, got+1),
	} {
		if !errors.Is(err, ErrWork) {
			t.Errorf("%s: %v, want ErrWork", name, err)
		}
	}
	// A proof for one body or mailbox is a random hash for another: it
	// has 10 zero bits with probability 2^-10, so of 32 reuses at most a
	// few may pass by luck.
	reused := 0
	for i := range 32 {
		changed := append(bytes.Clone(signed), byte(i))
		o := other
		o[1] = byte(i)
		nonce, err := Work{Bits: 10}.Worker(context.Background(), box)(changed)
		if err != nil {
			t.Fatal(err)
		}
		if VerifyWork(box, signed, nonce, 10) == nil {
			reused++
		}
		if VerifyWork(o, changed, nonce, 10) == nil {
			reused++
		}
	}
	if reused > 3 {
		t.Fatalf("%d of 64 proofs verified for another body or mailbox", reused)
	}
}

// TestWorkCapAndContext: a sender's search stops at its cap (ErrWork) and
// when its context ends (the context's error).
func TestWorkCapAndContext(t *testing.T) {
	var box ID
	if _, err := (Work{Bits: 40, MaxHashes: 1000}).Worker(context.Background(), box)([]byte("x")); !errors.Is(err, ErrWork) {
		t.Fatalf("capped search: %v, want ErrWork", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Work{Bits: 40}).Worker(ctx, box)([]byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled search: %v, want context.Canceled", err)
	}
	if _, err := (Work{Bits: 65}).Worker(context.Background(), box)([]byte("x")); !errors.Is(err, ErrWork) {
		t.Fatalf("difficulty 65: %v, want ErrWork", err)
	}
}

// TestNodePutWorkSetting: NewNode refuses a difficulty outside
// [0, MaxPutWork].
func TestNodePutWorkSetting(t *testing.T) {
	f, err := sphinx.NewFormat(sphinx.DefaultGeometry())
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(filepath.Join(t.TempDir(), "m.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, w := range []int{-1, MaxPutWork + 1} {
		if _, err := NewNode(NodeConfig{Store: s, Format: f, PutWork: w, Epoch: func() uint64 { return 1 },
			FirstHop: func(sphinx.NodeID) bool { return true },
			Send:     func(context.Context, sphinx.NodeID, []byte) error { return nil }}); err == nil {
			t.Errorf("PutWork %d accepted", w)
		}
	}
}

// FuzzVerifyWork: any request decodes or fails cleanly, and a Put's work
// check never panics and agrees with WorkBits.
func FuzzVerifyWork(f *testing.F) {
	var box ID
	box[3] = 7
	for _, bits := range []int{0, 4, 8} {
		b, err := testCodec.EncodeRequest(&Request{Op: OpPut, Mailbox: box, Message: []byte("m"), Scheme: WorkScheme}, Work{Bits: bits}.Worker(context.Background(), box))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(bits))
	}
	f.Fuzz(func(t *testing.T, b []byte, d uint8) {
		r, signed, err := testCodec.DecodeRequest(b)
		if err != nil || r.Op != OpPut {
			return
		}
		err = VerifyWork(r.Mailbox, signed, r.Auth, int(d))
		if ok := len(r.Auth) == WorkNonceSize && WorkBits(r.Mailbox, signed, r.Auth) >= int(d); ok != (err == nil) {
			t.Fatalf("VerifyWork %v disagrees with WorkBits", err)
		}
	})
}
