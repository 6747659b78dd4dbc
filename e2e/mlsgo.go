package e2e

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/thomas-vilte/mls-go/ciphersuite"
	"github.com/thomas-vilte/mls-go/credentials"
	"github.com/thomas-vilte/mls-go/framing"
	"github.com/thomas-vilte/mls-go/group"
	"github.com/thomas-vilte/mls-go/keypackages"
	"github.com/thomas-vilte/mls-go/treesync"
)

// MLSGo is the Backend over github.com/thomas-vilte/mls-go (RFC 9420),
// cipher suite 1. Handshake messages (proposals, commits) and application
// messages are all PrivateMessages: a mailbox node never sees who sent
// what. PublicMessages are refused.
type MLSGo struct{}

var _ Backend = MLSGo{}

const mlsgoSuite = ciphersuite.MLS128DHKEMX25519

func credWithKey(id *Identity) *credentials.CredentialWithKey {
	return &credentials.CredentialWithKey{
		Credential:        credentials.NewBasicCredential(encodeCredential(id.Name, id.Addresses)),
		Ed25519PrivateKey: id.Key,
		SignatureKeyBytes: []byte(id.Public()),
	}
}

func sigKey(id *Identity) *ciphersuite.SignaturePrivateKey {
	return ciphersuite.NewEd25519SignaturePrivateKey(id.Key)
}

// NewKeyPackage implements Backend. Private is init key || leaf key (32
// bytes each); the signature key is the identity's.
func (MLSGo) NewKeyPackage(id *Identity) (KeyPackage, error) {
	kp, priv, err := keypackages.Generate(credWithKey(id), mlsgoSuite)
	if err != nil {
		return KeyPackage{}, fmt.Errorf("e2e: key package: %w", err)
	}
	p := append(append([]byte{}, priv.InitKey.Bytes()...), priv.EncryptionKey.Bytes()...)
	return KeyPackage{Public: kp.Marshal(), Private: p}, nil
}

func parseKeyPackage(pub []byte) (kp *keypackages.KeyPackage, err error) {
	defer func() {
		if r := recover(); r != nil {
			kp, err = nil, fmt.Errorf("%w: key package: %v", ErrMalformed, r)
		}
	}()
	kp, err = keypackages.UnmarshalKeyPackage(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: key package: %v", ErrMalformed, err)
	}
	if kp.CipherSuite != mlsgoSuite {
		return nil, fmt.Errorf("%w: key package for cipher suite %d", ErrMalformed, kp.CipherSuite)
	}
	if err := kp.Verify(mlsgoSuite); err != nil {
		return nil, fmt.Errorf("%w: key package signature: %v", ErrRejected, err)
	}
	return kp, nil
}

func (MLSGo) KeyPackageRef(pub []byte) ([]byte, error) {
	if _, err := parseKeyPackage(pub); err != nil {
		return nil, err
	}
	return ciphersuite.MakeKeyPackageRef(pub, mlsgoSuite.HashFunction()).AsSlice(), nil
}

func (MLSGo) CheckKeyPackage(pub []byte) (Member, error) {
	kp, err := parseKeyPackage(pub)
	if err != nil {
		return Member{}, err
	}
	if kp.LeafNode == nil || kp.LeafNode.Credential == nil || len(kp.LeafNode.SignatureKeyBytes) != ed25519.PublicKeySize {
		return Member{}, fmt.Errorf("%w: key package leaf", ErrMalformed)
	}
	name, addrs := decodeCredential(kp.LeafNode.Credential.Identity)
	return Member{Name: name, Addresses: addrs, Key: ed25519.PublicKey(kp.LeafNode.SignatureKeyBytes)}, nil
}

func (MLSGo) NewGroup(id *Identity, groupID []byte) (Group, error) {
	kp, priv, err := keypackages.Generate(credWithKey(id), mlsgoSuite)
	if err != nil {
		return nil, fmt.Errorf("e2e: creator key package: %w", err)
	}
	g, err := group.NewGroup(group.NewGroupID(append([]byte{}, groupID...)), mlsgoSuite, kp, priv)
	if err != nil {
		return nil, fmt.Errorf("e2e: new group: %w", err)
	}
	return &mlsGroup{g: g, id: id}, nil
}

func parseMLS(msg []byte) (m *framing.MLSMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	m, err = framing.UnmarshalMLSMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m, nil
}

func parseWelcome(msg []byte) (w *group.Welcome, err error) {
	m, err := parseMLS(msg)
	if err != nil {
		return nil, err
	}
	if len(m.Welcome) == 0 {
		return nil, fmt.Errorf("%w: not a welcome", ErrMalformed)
	}
	defer func() {
		if r := recover(); r != nil {
			w, err = nil, fmt.Errorf("%w: welcome: %v", ErrMalformed, r)
		}
	}()
	w, err = group.UnmarshalWelcome(m.Welcome)
	if err != nil {
		return nil, fmt.Errorf("%w: welcome: %v", ErrMalformed, err)
	}
	if w.CipherSuite != mlsgoSuite {
		return nil, fmt.Errorf("%w: welcome for cipher suite %d", ErrMalformed, w.CipherSuite)
	}
	return w, nil
}

func (MLSGo) WelcomeRefs(welcome []byte) ([][]byte, error) {
	w, err := parseWelcome(welcome)
	if err != nil {
		return nil, err
	}
	var refs [][]byte
	for _, s := range w.Secrets {
		refs = append(refs, append([]byte{}, s.NewMember...))
	}
	return refs, nil
}

func (MLSGo) Join(id *Identity, welcome []byte, kp KeyPackage) (_ Group, err error) {
	w, err := parseWelcome(welcome)
	if err != nil {
		return nil, err
	}
	pub, err := parseKeyPackage(kp.Public)
	if err != nil {
		return nil, err
	}
	if len(kp.Private) != 64 {
		return nil, fmt.Errorf("%w: key package private part", ErrMalformed)
	}
	initKey, err := ecdh.X25519().NewPrivateKey(kp.Private[:32])
	if err != nil {
		return nil, fmt.Errorf("%w: init key: %v", ErrMalformed, err)
	}
	encKey, err := ecdh.X25519().NewPrivateKey(kp.Private[32:])
	if err != nil {
		return nil, fmt.Errorf("%w: leaf key: %v", ErrMalformed, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: welcome: %v", ErrRejected, r)
		}
	}()
	g, err := group.JoinFromWelcome(w, pub, &keypackages.KeyPackagePrivateKeys{InitKey: initKey, EncryptionKey: encKey, Ed25519SignatureKey: id.Key}, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: welcome: %v", ErrRejected, err)
	}
	return &mlsGroup{g: g, id: id}, nil
}

// savedGroup is the serialized form of an mlsGroup: mls-go's own state
// plus the TreeKEM private keys of our direct path, which mls-go's
// MarshalState leaves out (without them a restarted member cannot decrypt
// a later commit's UpdatePath aimed at one of those nodes).
type savedGroup struct {
	State    []byte            `json:"s"`
	Path     map[uint32][]byte `json:"p,omitempty"`
	LeaveRef []byte            `json:"l,omitempty"`
}

func (MLSGo) Load(id *Identity, state []byte) (_ Group, err error) {
	var s savedGroup
	if err := json.Unmarshal(state, &s); err != nil {
		return nil, fmt.Errorf("%w: group state: %v", ErrMalformed, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: group state: %v", ErrMalformed, r)
		}
	}()
	g, err := group.UnmarshalGroupState(s.State)
	if err != nil {
		return nil, fmt.Errorf("%w: group state: %v", ErrMalformed, err)
	}
	// mls-go's UnmarshalGroupState restores stored proposals but not its
	// ref → proposal index, so a commit naming one by reference would fail.
	for _, sp := range g.StoredProposals() {
		if len(sp.Ref) > 0 && sp.Proposal != nil {
			g.RegisterProposalRef(sp.Proposal, sp.Ref)
		}
	}
	if pk := pathKeys(g); pk != nil && len(s.Path) > 0 {
		*pk = make(map[treesync.NodeIndex][]byte, len(s.Path))
		for n, k := range s.Path {
			(*pk)[treesync.NodeIndex(n)] = append([]byte{}, k...)
		}
	}
	return &mlsGroup{g: g, id: id, leaveRef: s.LeaveRef}, nil
}

func (MLSGo) Header(msg []byte) (Header, error) {
	m, err := parseMLS(msg)
	if err != nil {
		return Header{}, err
	}
	if len(m.Welcome) > 0 {
		return Header{Kind: KindWelcome}, nil
	}
	pm, ok := m.AsPrivate()
	if !ok {
		return Header{}, fmt.Errorf("%w: only PrivateMessages and Welcomes are accepted", ErrMalformed)
	}
	var k Kind
	switch pm.ContentType {
	case framing.ContentTypeApplication:
		k = KindApplication
	case framing.ContentTypeProposal:
		k = KindProposal
	case framing.ContentTypeCommit:
		k = KindCommit
	default:
		return Header{}, fmt.Errorf("%w: content type %d", ErrMalformed, pm.ContentType)
	}
	return Header{Kind: k, GroupID: append([]byte{}, pm.GroupID...), Epoch: pm.Epoch}, nil
}

// pathKeys reaches mls-go's unexported per-node TreeKEM private keys
// (Group.pathNodePrivKeys) so they can be persisted; see savedGroup. It
// returns nil if a future mls-go renames or retypes the field, which
// TestRestartThenCommit catches.
func pathKeys(g *group.Group) *map[treesync.NodeIndex][]byte {
	v := reflect.ValueOf(g).Elem().FieldByName("pathNodePrivKeys")
	if !v.IsValid() || v.Type() != reflect.TypeFor[map[treesync.NodeIndex][]byte]() {
		return nil
	}
	return (*map[treesync.NodeIndex][]byte)(unsafe.Pointer(v.UnsafeAddr()))
}

type mlsGroup struct {
	g        *group.Group
	id       *Identity
	leaveRef []byte // our pending leave proposal's ProposalRef
}

func (m *mlsGroup) ID() []byte                 { return append([]byte{}, m.g.GroupID().AsSlice()...) }
func (m *mlsGroup) Epoch() uint64              { return m.g.Epoch().AsUint64() }
func (m *mlsGroup) EpochAuthenticator() []byte { return append([]byte{}, m.g.EpochAuthenticator()...) }
func (m *mlsGroup) Self() uint32               { return uint32(m.g.OwnLeafIndex()) }
func (m *mlsGroup) PendingProposals() int      { return len(m.g.StoredProposals()) }

func (m *mlsGroup) member(leaf uint32) (Member, bool) {
	mem, ok := m.g.GetMember(group.LeafNodeIndex(leaf))
	if !ok || mem == nil || !mem.Active {
		return Member{}, false
	}
	key := m.g.MemberSigningKey(group.LeafNodeIndex(leaf))
	if len(key) != ed25519.PublicKeySize {
		return Member{}, false
	}
	var name string
	var addrs []Address
	if mem.Credential != nil {
		name, addrs = decodeCredential(mem.Credential.Identity)
	}
	return Member{Leaf: leaf, Name: name, Addresses: addrs, Key: append(ed25519.PublicKey{}, key...)}, true
}

func (m *mlsGroup) Members() []Member {
	var out []Member
	for _, mem := range m.g.GetMembers() {
		if x, ok := m.member(uint32(mem.LeafIndex)); ok {
			out = append(out, x)
		}
	}
	return out
}

func (m *mlsGroup) Marshal() ([]byte, error) {
	st, err := m.g.MarshalState()
	if err != nil {
		return nil, fmt.Errorf("e2e: marshal group: %w", err)
	}
	s := savedGroup{State: st, LeaveRef: m.leaveRef}
	if pk := pathKeys(m.g); pk != nil && len(*pk) > 0 {
		s.Path = make(map[uint32][]byte, len(*pk))
		for n, k := range *pk {
			s.Path[uint32(n)] = k
		}
	}
	return json.Marshal(s)
}

func (m *mlsGroup) Clone() (Group, error) {
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return MLSGo{}.Load(m.id, b)
}

func (m *mlsGroup) clone() (*mlsGroup, error) {
	c, err := m.Clone()
	if err != nil {
		return nil, err
	}
	return c.(*mlsGroup), nil
}

func (m *mlsGroup) Commit(adds [][]byte, removes []uint32) (commit, welcome []byte, err error) {
	c, err := m.clone()
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			commit, welcome, err = nil, nil, fmt.Errorf("%w: commit: %v", ErrRejected, r)
		}
	}()
	g := c.g
	for _, a := range adds {
		kp, err := parseKeyPackage(a)
		if err != nil {
			return nil, nil, err
		}
		if _, err := g.AddMember(kp); err != nil {
			return nil, nil, fmt.Errorf("%w: add: %v", ErrRejected, err)
		}
	}
	for _, r := range removes {
		if r == m.Self() {
			return nil, nil, fmt.Errorf("%w: a member cannot commit its own removal; use ProposeLeave", ErrRejected)
		}
		if _, ok := m.member(r); !ok {
			return nil, nil, fmt.Errorf("%w: remove leaf %d: not a member", ErrRejected, r)
		}
		if _, err := g.RemoveMember(group.LeafNodeIndex(r)); err != nil {
			return nil, nil, fmt.Errorf("%w: remove: %v", ErrRejected, err)
		}
	}
	sk := sigKey(m.id)
	sc, err := g.CommitWithFormat(sk, sk.PublicKey(), nil, framing.WireFormatPrivateMessage)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: commit: %v", ErrRejected, err)
	}
	pm, err := framing.Encrypt(framing.EncryptParams{
		AuthContent:      sc.AuthenticatedContent(),
		SenderLeafIndex:  uint32(g.OwnLeafIndex()),
		CipherSuite:      mlsgoSuite,
		SenderDataSecret: g.EpochSecrets().SenderDataSecret,
		SecretTree:       g.SecretTree(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("e2e: encrypt commit: %w", err)
	}
	var newKPs []*keypackages.KeyPackage
	for _, p := range sc.Proposals() {
		if p.Type == group.ProposalTypeAdd && p.Add != nil {
			newKPs = append(newKPs, p.Add.KeyPackage)
		}
	}
	joiner := sc.JoinerSecret()
	if err := g.MergeCommit(sc); err != nil {
		return nil, nil, fmt.Errorf("%w: merge own commit: %v", ErrRejected, err)
	}
	if len(newKPs) > 0 {
		w, err := g.CreateWelcomeWithOptions(newKPs, group.CreateWelcomeOptions{
			JoinerSecret: joiner, SignerPrivKey: sk, PskIDs: sc.PskIDs(), PskSecret: sc.RawPskSecret(), StagedCommit: sc,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("e2e: welcome: %w", err)
		}
		welcome = (&framing.MLSMessage{Welcome: w.Marshal()}).Marshal()
	}
	m.g = g
	return framing.NewMLSMessagePrivate(pm).Marshal(), welcome, nil
}

func (m *mlsGroup) ProposeLeave() ([]byte, error) {
	g := m.g
	sk := sigKey(m.id)
	ac := &framing.AuthenticatedContent{
		WireFormat: framing.WireFormatPrivateMessage,
		Content: framing.FramedContent{
			GroupID:           g.GroupID().AsSlice(),
			Epoch:             g.Epoch().AsUint64(),
			Sender:            framing.Sender{Type: framing.SenderTypeMember, LeafIndex: uint32(g.OwnLeafIndex())},
			AuthenticatedData: []byte{},
			Body:              framing.ProposalBody{Data: group.ProposalMarshal(group.NewRemoveProposal(g.OwnLeafIndex()))},
		},
		GroupContext: g.GroupContext().Marshal(),
	}
	sig, err := ciphersuite.SignWithLabel(sk, "FramedContentTBS", ac.MarshalTBS())
	if err != nil {
		return nil, fmt.Errorf("e2e: sign leave proposal: %w", err)
	}
	ac.Auth = framing.FramedContentAuthData{Signature: sig}
	pm, err := framing.Encrypt(framing.EncryptParams{
		AuthContent:      ac,
		SenderLeafIndex:  uint32(g.OwnLeafIndex()),
		CipherSuite:      mlsgoSuite,
		SenderDataSecret: g.EpochSecrets().SenderDataSecret,
		SecretTree:       g.SecretTree(),
	})
	if err != nil {
		return nil, fmt.Errorf("e2e: leave proposal: %w", err)
	}
	// Remember the proposal's reference: the commit that carries it names
	// it by reference, and we must recognise our own removal.
	m.leaveRef = group.ComputeProposalRef((&framing.AuthenticatedContent{WireFormat: ac.WireFormat, Content: ac.Content, Auth: ac.Auth}).Marshal(), mlsgoSuite)
	return framing.NewMLSMessagePrivate(pm).Marshal(), nil
}

func (m *mlsGroup) Encrypt(plaintext []byte) ([]byte, error) {
	pm, err := m.g.SendMessage(plaintext, sigKey(m.id))
	if err != nil {
		return nil, fmt.Errorf("e2e: encrypt: %w", err)
	}
	return framing.NewMLSMessagePrivate(pm).Marshal(), nil
}

func (m *mlsGroup) Process(msg []byte) (out Processed, err error) {
	mm, err := parseMLS(msg)
	if err != nil {
		return Processed{}, err
	}
	pm, ok := mm.AsPrivate()
	if !ok {
		return Processed{}, fmt.Errorf("%w: only PrivateMessages are accepted", ErrMalformed)
	}
	if string(pm.GroupID) != string(m.g.GroupID().AsSlice()) {
		return Processed{}, ErrWrongGroup
	}
	if pm.ContentType == framing.ContentTypeApplication {
		return m.application(pm)
	}
	if pm.Epoch < m.Epoch() {
		return Processed{}, fmt.Errorf("%w: handshake for epoch %d, we are at %d", ErrStaleEpoch, pm.Epoch, m.Epoch())
	}
	if pm.Epoch > m.Epoch() {
		return Processed{}, fmt.Errorf("%w: handshake for epoch %d, we are at %d", ErrFutureEpoch, pm.Epoch, m.Epoch())
	}
	c, err := m.clone()
	if err != nil {
		return Processed{}, err
	}
	out, err = c.handshake(pm)
	if err != nil {
		return Processed{}, err
	}
	m.g = c.g
	return out, nil
}

func (m *mlsGroup) application(pm *framing.PrivateMessage) (out Processed, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = Processed{}, fmt.Errorf("%w: application message: %v", ErrMalformed, r)
		}
	}()
	pt, _, leaf, err := m.g.ReceiveApplicationMessage(pm)
	if err != nil {
		return Processed{}, classify(err)
	}
	sender, ok := m.member(uint32(leaf))
	if !ok {
		return Processed{}, fmt.Errorf("%w: leaf %d", ErrNotMember, leaf)
	}
	return Processed{Kind: KindApplication, Sender: sender, Plaintext: pt, Epoch: m.Epoch()}, nil
}

// classify maps an mls-go decryption failure to our errors: a message whose
// key was already used is a replay.
func classify(err error) error {
	var dec *group.ErrDecryptionFailed
	var unk *group.ErrUnknownMember
	switch {
	case errors.As(err, &unk):
		return fmt.Errorf("%w: %v", ErrNotMember, err)
	case errors.As(err, &dec):
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	return fmt.Errorf("%w: %v", ErrRejected, err)
}

// handshake processes a proposal or commit on m (a clone: it may be left
// half-changed on error).
func (m *mlsGroup) handshake(pm *framing.PrivateMessage) (out Processed, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = Processed{}, fmt.Errorf("%w: handshake: %v", ErrMalformed, r)
		}
	}()
	g := m.g
	ac, err := framing.Decrypt(pm, framing.DecryptParams{
		CipherSuite:      mlsgoSuite,
		SenderDataSecret: g.EpochSecrets().SenderDataSecret,
		SecretTree:       g.SecretTree(),
		GroupContext:     g.GroupContext().Marshal(),
	})
	if err != nil {
		return Processed{}, fmt.Errorf("%w: decrypt: %v", ErrRejected, err)
	}
	if ac.Content.Sender.Type != framing.SenderTypeMember {
		return Processed{}, fmt.Errorf("%w: sender type %d", ErrNotMember, ac.Content.Sender.Type)
	}
	leaf := ac.Content.Sender.LeafIndex
	sender, ok := m.member(leaf)
	if !ok {
		return Processed{}, fmt.Errorf("%w: leaf %d", ErrNotMember, leaf)
	}
	pub := ciphersuite.NewMLSSignaturePublicKey(sender.Key, mlsgoSuite.SignatureScheme())
	if err := ciphersuite.VerifyWithLabel(pub, "FramedContentTBS", ac.MarshalTBS(), ac.Auth.Signature); err != nil {
		return Processed{}, fmt.Errorf("%w: signature: %v", ErrRejected, err)
	}
	ac.WireFormat = framing.WireFormatPrivateMessage
	switch body := ac.Content.Body.(type) {
	case framing.ProposalBody:
		p, err := group.UnmarshalProposal(body.Data)
		if err != nil {
			return Processed{}, fmt.Errorf("%w: proposal: %v", ErrMalformed, err)
		}
		// Strata's members only ever propose their own removal (leave);
		// everything else is committed directly.
		if p.Type != group.ProposalTypeRemove || p.Remove == nil || uint32(p.Remove.Removed) != leaf {
			return Processed{}, fmt.Errorf("%w: only a member's own Remove may be proposed", ErrRejected)
		}
		g.StoreProposal(p, group.LeafNodeIndex(leaf), (&framing.AuthenticatedContent{WireFormat: ac.WireFormat, Content: ac.Content, Auth: ac.Auth}).Marshal())
		return Processed{Kind: KindProposal, Sender: sender, Epoch: m.Epoch()}, nil
	case framing.CommitBody:
		self := m.Self()
		if removesLeaf(g, body.Data, self, m.leaveRef) {
			// A removed member is outside every copath resolution and
			// cannot apply the commit: note the removal, keep the state.
			return Processed{Kind: KindCommit, Sender: sender, Epoch: m.Epoch(), Removed: true}, nil
		}
		if err := g.ProcessReceivedCommit(ac, treesync.LeafIndex(leaf), g.MyLeafEncryptionKey()); err != nil {
			return Processed{}, fmt.Errorf("%w: commit: %v", ErrRejected, err)
		}
		_, still := m.member(self)
		return Processed{Kind: KindCommit, Sender: sender, Epoch: m.Epoch(), Removed: !still}, nil
	}
	return Processed{}, fmt.Errorf("%w: handshake body %T", ErrMalformed, ac.Content.Body)
}

// handshake processes a PublicMessage or PrivateMessage proposal/commit the
// way mls-go's own entry points do; used by the interop vector tests.
func handshake(g *group.Group, msg []byte) error {
	m, err := framing.UnmarshalMLSMessage(msg)
	if err != nil {
		return err
	}
	if pm, ok := m.AsPublic(); ok {
		return g.ProcessPublicMessage(pm)
	}
	if pm, ok := m.AsPrivate(); ok {
		return g.ProcessPrivateMessage(pm)
	}
	return ErrMalformed
}

// mlsExporter is MLS-Exporter (RFC 9420 §8.5):
//
//	ExpandWithLabel(DeriveSecret(exporter_secret, Label), "exported", Hash(Context), Length)
//
// mls-go v1.0.0's schedule.Exporter uses the label "exporter" instead of
// "exported" and so disagrees with the mlswg key-schedule vectors; this is
// the corrected construction over mls-go's primitives.
func mlsExporter(exporterSecret *ciphersuite.Secret, label []byte, context []byte, length int) ([]byte, error) {
	if exporterSecret == nil {
		return nil, errors.New("e2e: no exporter secret")
	}
	if length <= 0 || length > 255*mlsgoSuite.HashLength() {
		return nil, fmt.Errorf("e2e: exporter length %d", length)
	}
	s, err := exporterSecret.DeriveSecret(mlsgoSuite, string(label))
	if err != nil {
		return nil, fmt.Errorf("e2e: exporter: %w", err)
	}
	h := mlsgoSuite.HashFunction()()
	h.Write(context)
	out, err := s.KdfExpandLabel("exported", h.Sum(nil), length)
	if err != nil {
		return nil, fmt.Errorf("e2e: exporter: %w", err)
	}
	return out.AsSlice(), nil
}

// Export implements Group: MLS-Exporter for the current epoch.
func (m *mlsGroup) Export(label string, context []byte, length int) ([]byte, error) {
	es := m.g.EpochSecrets()
	if es == nil {
		return nil, errors.New("e2e: no epoch secrets")
	}
	return mlsExporter(es.ExporterSecret, []byte(label), context, length)
}

// removesLeaf reports whether a commit removes leaf, by value or by
// reference to a stored proposal.
func removesLeaf(g *group.Group, commit []byte, leaf uint32, leaveRef []byte) bool {
	c, err := group.UnmarshalCommit(commit)
	if err != nil {
		return false
	}
	stored := g.StoredProposals()
	for _, por := range c.Proposals {
		p := por.Proposal
		if p == nil && len(leaveRef) > 0 && string(por.ProposalRef) == string(leaveRef) {
			return true
		}
		if p == nil {
			for _, sp := range stored {
				if len(sp.Ref) > 0 && string(sp.Ref) == string(por.ProposalRef) {
					p = sp.Proposal
				}
			}
		}
		if p != nil && p.Type == group.ProposalTypeRemove && p.Remove != nil && uint32(p.Remove.Removed) == leaf {
			return true
		}
	}
	return false
}

// encodeCredential is the identity of Strata's MLS basic credentials:
//
//	u8 len | name (UTF-8) | u8 n | n × (node[32] | mailbox[16])
func encodeCredential(name string, addrs []Address) []byte {
	b := append([]byte{byte(len(name))}, name...)
	b = append(b, byte(len(addrs)))
	for _, a := range addrs {
		b = append(b, a.Node[:]...)
		b = append(b, a.Mailbox[:]...)
	}
	return b
}

// decodeCredential parses encodeCredential's format; anything else (other
// implementations' credentials, as in the interop vectors) is taken as a
// bare name with no mailboxes.
func decodeCredential(b []byte) (string, []Address) {
	r := &reader{b: b}
	name := r.take(r.u8())
	n := r.u8()
	if n > maxAddresses {
		return string(b), nil
	}
	var addrs []Address
	for i := 0; i < n && !r.err; i++ {
		var a Address
		copy(a.Node[:], r.take(NodeIDSize))
		copy(a.Mailbox[:], r.take(MailboxIDSize))
		addrs = append(addrs, a)
	}
	if r.err || len(r.b) != 0 || len(name) == 0 {
		return string(b), nil
	}
	return string(name), addrs
}
