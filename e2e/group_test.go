package e2e

import (
	"bytes"
	"errors"
	"testing"
)

type tmember struct {
	id *Identity
	o  *ordered
}

func newIdentity(t testing.TB, name string) *Identity {
	t.Helper()
	id, err := NewIdentity(name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// newGroup makes a group of n members (leaf i = names[i]) all at the same
// epoch, built by member 0 adding everyone in one commit.
func newGroup(t testing.TB, names ...string) []*tmember {
	t.Helper()
	b := MLSGo{}
	ms := make([]*tmember, len(names))
	id0 := newIdentity(t, names[0])
	g0, err := b.NewGroup(id0, []byte("group-"+names[0]))
	if err != nil {
		t.Fatal(err)
	}
	ms[0] = &tmember{id: id0, o: &ordered{b: b, id: id0, g: g0}}
	var kps []KeyPackage
	var adds [][]byte
	for i := 1; i < len(names); i++ {
		id := newIdentity(t, names[i])
		kp, err := b.NewKeyPackage(id)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = &tmember{id: id}
		kps = append(kps, kp)
		adds = append(adds, kp.Public)
	}
	if len(adds) == 0 {
		return ms
	}
	_, welcome, err := ms[0].o.commit(Intent{Adds: adds}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(names); i++ {
		g, err := b.Join(ms[i].id, welcome, kps[i-1])
		if err != nil {
			t.Fatalf("join %s: %v", names[i], err)
		}
		ms[i].o = &ordered{b: b, id: ms[i].id, g: g}
	}
	return ms
}

func sameEpoch(t *testing.T, ms ...*tmember) {
	t.Helper()
	for _, m := range ms[1:] {
		if m.o.g.Epoch() != ms[0].o.g.Epoch() || !bytes.Equal(m.o.g.EpochAuthenticator(), ms[0].o.g.EpochAuthenticator()) {
			t.Fatalf("%s at epoch %d, %s at epoch %d (or authenticators differ)", m.id.Name, m.o.g.Epoch(), ms[0].id.Name, ms[0].o.g.Epoch())
		}
	}
}

func mustReceive(t *testing.T, m *tmember, msg []byte) Processed {
	t.Helper()
	p, _, _, err := m.o.receive(msg)
	if err != nil {
		t.Fatalf("%s: %v", m.id.Name, err)
	}
	return p
}

func TestGroupMessagesAndMembership(t *testing.T) {
	ms := newGroup(t, "alice", "bob", "carol")
	sameEpoch(t, ms...)
	if n := len(ms[2].o.g.Members()); n != 3 {
		t.Fatalf("%d members", n)
	}
	ct, err := ms[1].o.encrypt([]byte("hi from bob"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*tmember{ms[0], ms[2]} {
		p := mustReceive(t, m, ct)
		if string(p.Plaintext) != "hi from bob" || p.Sender.Name != "bob" || !bytes.Equal(p.Sender.Key, ms[1].id.Public()) {
			t.Fatalf("%s got %+v", m.id.Name, p)
		}
	}
	// Replay of the same application message is refused.
	if _, _, _, err := ms[0].o.receive(ct); err == nil {
		t.Fatal("replayed application message accepted")
	}
	// Carol removes bob.
	commit, _, err := ms[2].o.commit(Intent{Removes: [][]byte{ms[1].id.Public()}}, []uint32{1})
	if err != nil {
		t.Fatal(err)
	}
	mustReceive(t, ms[0], commit)
	if p := mustReceive(t, ms[1], commit); !p.Removed {
		t.Fatal("bob was not told he was removed")
	}
	sameEpoch(t, ms[0], ms[2])
	ct, err = ms[0].o.encrypt([]byte("bob is gone"))
	if err != nil {
		t.Fatal(err)
	}
	if p := mustReceive(t, ms[2], ct); string(p.Plaintext) != "bob is gone" {
		t.Fatal(p)
	}
	if _, err := ms[1].o.g.Process(ct); err == nil {
		t.Fatal("removed member decrypted a new message")
	}
	// Leave: carol proposes her removal, alice commits it.
	prop, err := ms[2].o.g.ProposeLeave()
	if err != nil {
		t.Fatal(err)
	}
	if p := mustReceive(t, ms[0], prop); p.Kind != KindProposal {
		t.Fatal(p)
	}
	commit, _, err = ms[0].o.commit(Intent{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := mustReceive(t, ms[2], commit); !p.Removed {
		t.Fatal("carol's leave was not committed")
	}
	if n := len(ms[0].o.g.Members()); n != 1 {
		t.Fatalf("%d members left", n)
	}
}

// Two members commit on the same epoch; every member, whatever order the
// commits arrive in, ends on the commit with the lowest hash, and the
// loser learns its intent was lost.
func TestConcurrentCommits(t *testing.T) {
	ms := newGroup(t, "alice", "bob", "carol", "dave")
	b := MLSGo{}
	erin := newIdentity(t, "erin")
	kp, err := b.NewKeyPackage(erin)
	if err != nil {
		t.Fatal(err)
	}
	// Alice adds erin, bob removes dave, at the same time on epoch 1.
	ca, _, err := ms[0].o.commit(Intent{Adds: [][]byte{kp.Public}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb, _, err := ms[1].o.commit(Intent{Removes: [][]byte{ms[3].id.Public()}}, []uint32{3})
	if err != nil {
		t.Fatal(err)
	}
	ha, hb := commitHash(ca), commitHash(cb)
	win, lose, winner, loser := ca, cb, ms[0], ms[1]
	if bytes.Compare(hb[:], ha[:]) < 0 {
		win, lose, winner, loser = cb, ca, ms[1], ms[0]
	}
	// The winner sees the loser's commit: it loses, nothing changes.
	ea := winner.o.g.EpochAuthenticator()
	if _, _, _, err := winner.o.receive(lose); !errors.Is(err, ErrCommitLost) {
		t.Fatalf("winner: %v", err)
	}
	if !bytes.Equal(ea, winner.o.g.EpochAuthenticator()) {
		t.Fatal("losing commit changed the winner's state")
	}
	// The loser sees the winner's commit: it rolls back.
	_, rb, _, err := loser.o.receive(win)
	if err != nil {
		t.Fatal(err)
	}
	if rb == nil || len(rb.Lost) != 1 {
		t.Fatalf("loser rollback %+v", rb)
	}
	// Carol gets loser first, then winner; dave the other way round.
	mustReceive(t, ms[2], lose)
	if _, rb, _, err := ms[2].o.receive(win); err != nil || rb == nil {
		t.Fatalf("carol: %v %v", rb, err)
	}
	if _, _, _, err := ms[2].o.receive(win); !errors.Is(err, ErrReplay) {
		t.Fatalf("carol replay: %v", err)
	}
	if bytes.Equal(win, cb) {
		// Dave was removed by the winner.
		if p := mustReceive(t, ms[3], win); !p.Removed {
			t.Fatal("dave not removed")
		}
		sameEpoch(t, ms[0], ms[1], ms[2])
	} else {
		mustReceive(t, ms[3], win)
		if _, _, _, err := ms[3].o.receive(lose); !errors.Is(err, ErrCommitLost) {
			t.Fatalf("dave: %v", err)
		}
		sameEpoch(t, ms...)
	}
	// The loser redoes its intent on the new epoch and everyone follows.
	in := rb.Lost[0]
	var removes []uint32
	for _, k := range in.Removes {
		for _, m := range loser.o.g.Members() {
			if bytes.Equal(m.Key, k) {
				removes = append(removes, m.Leaf)
			}
		}
	}
	redo, _, err := loser.o.commit(in, removes)
	if err != nil {
		t.Fatal(err)
	}
	mustReceive(t, winner, redo)
	mustReceive(t, ms[2], redo)
	sameEpoch(t, ms[0], ms[1], ms[2])
	if got := len(ms[2].o.g.Members()); got != 4 {
		t.Fatalf("%d members after both changes", got)
	}
}

// Messages for a future epoch are buffered and applied once the group gets
// there.
func TestFutureEpochBuffered(t *testing.T) {
	ms := newGroup(t, "alice", "bob", "carol")
	c1, _, err := ms[0].o.commit(Intent{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustReceive(t, ms[1], c1)
	c2, _, err := ms[1].o.commit(Intent{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustReceive(t, ms[0], c2)
	if _, _, _, err := ms[2].o.receive(c2); !errors.Is(err, ErrFutureEpoch) {
		t.Fatalf("want future epoch, got %v", err)
	}
	_, _, drained, err := ms[2].o.receive(c1)
	if err != nil || len(drained) != 1 {
		t.Fatalf("drained %d, %v", len(drained), err)
	}
	sameEpoch(t, ms...)
}

// A restarted member must still decrypt an UpdatePath aimed at an
// intermediate node it holds the key of (mls-go's MarshalState drops those
// keys; savedGroup keeps them).
func TestRestartThenCommit(t *testing.T) {
	ms := newGroup(t, "alice", "bob", "carol", "dave")
	if pathKeys(ms[1].o.g.(*mlsGroup).g) == nil {
		t.Fatal("mls-go's path key field is gone: savedGroup cannot persist TreeKEM keys")
	}
	state, err := ms[1].o.g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := MLSGo{}.Load(ms[1].id, state)
	if err != nil {
		t.Fatal(err)
	}
	ms[1].o.g = g
	// Carol's copath includes node 1 (alice and bob's parent): bob needs
	// that node's private key.
	commit, _, err := ms[2].o.commit(Intent{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustReceive(t, ms[1], commit)
	mustReceive(t, ms[0], commit)
	sameEpoch(t, ms[0], ms[1], ms[2])
	// Without the stored path keys the same commit is undecryptable.
	var s savedGroup
	if err := jsonUnmarshal(state, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Path) == 0 {
		t.Fatal("no path keys saved")
	}
}

// Bad input is rejected with a clear error and leaves the state as it was.
func TestBadInput(t *testing.T) {
	ms := newGroup(t, "alice", "bob", "carol")
	outsider := newGroup(t, "mallory", "trudy")
	before := ms[0].o.g.EpochAuthenticator()
	ct, err := ms[1].o.encrypt([]byte("ok"))
	if err != nil {
		t.Fatal(err)
	}
	commit, _, err := ms[2].o.commit(Intent{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := outsider[0].o.encrypt([]byte("x"))
	cases := map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("hello"),
		"truncated": commit[:len(commit)/2],
		"foreign":   foreign,
	}
	flipped := append([]byte{}, commit...)
	flipped[len(flipped)-5] ^= 1
	cases["flipped commit"] = flipped
	flippedCT := append([]byte{}, ct...)
	flippedCT[len(flippedCT)-3] ^= 1
	cases["flipped application"] = flippedCT
	for name, msg := range cases {
		if _, _, _, err := ms[0].o.receive(msg); err == nil {
			t.Fatalf("%s accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if !bytes.Equal(before, ms[0].o.g.EpochAuthenticator()) {
			t.Fatalf("%s changed the state", name)
		}
	}
	// The good messages still work afterwards.
	mustReceive(t, ms[0], ct)
	mustReceive(t, ms[0], commit)
	// Replays.
	if _, _, _, err := ms[0].o.receive(ct); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed application: %v", err)
	}
	if _, _, _, err := ms[0].o.receive(commit); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed commit: %v", err)
	}
	// A message from a removed member (non-member) is refused.
	rm, _, err := ms[0].o.commit(Intent{Removes: [][]byte{ms[1].id.Public()}}, []uint32{1})
	if err != nil {
		t.Fatal(err)
	}
	mustReceive(t, ms[1], commit)
	mustReceive(t, ms[2], rm)
	if p := mustReceive(t, ms[1], rm); !p.Removed {
		t.Fatal("bob not removed")
	}
	// Bob still holds his old state and encrypts on the old epoch: the
	// others have moved on and refuse it.
	late, err := ms[1].o.encrypt([]byte("am I still here?"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := ms[2].o.receive(late); err == nil {
		t.Fatal("message from a removed member accepted")
	}
	if _, _, _, err := ms[2].o.receive(commit); err == nil {
		t.Fatal("old commit accepted again")
	}
	// A Welcome for a key package we did not issue.
	b := MLSGo{}
	zed := newIdentity(t, "zed")
	kpZ, _ := b.NewKeyPackage(zed)
	_, w, err := ms[0].o.commit(Intent{Adds: [][]byte{kpZ.Public}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := newIdentity(t, "other")
	kpO, _ := b.NewKeyPackage(other)
	if _, err := b.Join(other, w, kpO); err == nil {
		t.Fatal("joined with a welcome for someone else's key package")
	}
}

func FuzzProcess(f *testing.F) {
	ms := newGroup(f, "alice", "bob")
	ct, _ := ms[1].o.encrypt([]byte("seed"))
	commit, w, _ := ms[1].o.commit(Intent{}, nil)
	f.Add(ct)
	f.Add(commit)
	f.Add(w)
	f.Add([]byte{0, 1, 0, 2})
	state, _ := ms[0].o.g.Marshal()
	f.Fuzz(func(t *testing.T, msg []byte) {
		g, err := MLSGo{}.Load(ms[0].id, state)
		if err != nil {
			t.Fatal(err)
		}
		o := &ordered{b: MLSGo{}, id: ms[0].id, g: g}
		_, _, _, _ = o.receive(msg)
		_, _ = MLSGo{}.Header(msg)
		_, _ = MLSGo{}.WelcomeRefs(msg)
	})
}

func FuzzCredential(f *testing.F) {
	var a Address
	a.Mailbox[0] = 9
	f.Add(encodeCredential("alice", []Address{a}))
	f.Add([]byte("bare name"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, addrs := decodeCredential(b)
		if name == string(b) {
			return // not ours: a bare name
		}
		if !bytes.Equal(encodeCredential(name, addrs), b) {
			t.Fatal("accepted credential does not re-encode")
		}
	})
}
