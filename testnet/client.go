package testnet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/mailbox"
	"github.com/strata-mix/strata/node"
	"github.com/strata-mix/strata/queue"
	"github.com/strata-mix/strata/sphinx"
	"github.com/strata-mix/strata/transport"
)

// The demo clients encrypt each message to its recipient with HPKE (RFC
// 9180, DHKEM(X25519), HKDF-SHA256, ChaCha20-Poly1305): the mailbox node
// stores ciphertext it cannot read. (MLS groups replace this in package
// e2e.)
var (
	suite    = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)
	hpkeInfo = []byte("strata-testnet-v1 message")
)

// demoType is the mailbox type of demo messages.
const demoType mailbox.Type = 1

// maxAttempts bounds how often a direct Put (Config.DirectPuts) is tried
// before the message counts as lost.
const maxAttempts = 8

// demoMessage is what a demo client seals for its peer.
type demoMessage struct {
	ID   string `json:"id"`
	From string `json:"from"`
	Sent int64  `json:"sent"` // unix nanoseconds
	Text string `json:"text"`
}

// outgoing is a message on its way.
type outgoing struct {
	Message
	from, to *demoClient
	sealed   []byte
	sent     time.Time
	acked    chan struct{}
	ackOnce  sync.Once
}

// demoClient is one demo user: a mix client, its message queue, its
// mailbox, its HPKE key.
type demoClient struct {
	t     *Testnet
	name  string
	c     *client.Client
	mq    *node.MailQueue // nil with Config.DirectPuts
	owner *mailbox.Owner
	codec mailbox.Codec
	node  sphinx.NodeID
	box   mailbox.ID
	priv  kem.PrivateKey
	pub   kem.PublicKey
	ctx   context.Context // ends when the client closes
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu      sync.Mutex
	inbox   []Message
	sent    []*outgoing
	pending map[sphinx.SURBID]*outgoing // direct Puts awaiting the node's answer
	byMsg   map[queue.MsgID]*outgoing   // queued messages awaiting their outcome
	seq     int
}

// startClient starts demo client i: home relay i-th of the first stratum
// (round robin), mailbox on node i mod Mailboxes. The client lives until ctx
// ends; making its mailbox may take until start ends.
func (t *Testnet) startClient(ctx, start context.Context, i int) (*demoClient, error) {
	top := t.cache.Current()
	var homes []sphinx.NodeID
	for _, r := range top.Relays {
		homes = append(homes, r.ID)
	}
	home, _ := top.Relay(homes[(i*len(homes)/t.cfg.Clients)%len(homes)])
	dir := filepath.Join(t.cfg.DataDir, fmt.Sprintf("client-%d", i+1))
	key, err := transport.GenerateIdentity()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	c, err := client.New(cctx, client.Config{
		Identity: key, DataDir: dir, Home: node.PeerOf(home.NodeInfo), Topology: t.cache.Current,
		Logger: t.cfg.Logger.With("node", fmt.Sprintf("client-%d", i+1)),
	})
	if err != nil {
		cancel()
		return nil, err
	}
	pub, priv, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().GenerateKeyPair()
	if err != nil {
		cancel()
		c.Close()
		return nil, err
	}
	d := &demoClient{t: t, name: fmt.Sprintf("client-%d", i+1), c: c, codec: mailbox.CodecFor(sphinx.DefaultGeometry()),
		node: top.Mailboxes[i%len(top.Mailboxes)].ID, priv: priv, pub: pub, ctx: cctx, stop: cancel, pending: map[sphinx.SURBID]*outgoing{},
		byMsg: map[queue.MsgID]*outgoing{}}
	_, boxKey, _ := ed25519.GenerateKey(rand.Reader)
	// The node creates a mailbox only under the id its key derives to.
	d.box = mailbox.Ed25519ID(demoType, boxKey.Public().(ed25519.PublicKey))
	d.owner = mailbox.NewOwner(mailbox.OwnerConfig{Mix: c, Codec: d.codec, Node: d.node, ID: d.box, Type: demoType,
		// Every queue chunk is a stored message pushed through one SURB:
		// keep a deep stock, and fetch often what lost pushes left behind.
		// Delete what was received every 10 s, or a long run fills the
		// mailboxes to their quota (every chunk is a stored message).
		Key: boxKey, Stock: node.MailQueueStock, FetchEvery: 3 * time.Second, DeleteEvery: 10 * time.Second, Epoch: func() uint64 {
			if top := t.cache.Current(); top != nil {
				return top.Epoch
			}
			return 0
		}, Logger: t.cfg.Logger.With("node", d.name)})
	if !t.cfg.DirectPuts {
		if err := d.openQueue(dir); err != nil {
			cancel()
			c.Close()
			return nil, err
		}
	}
	d.wg.Add(3)
	if d.mq != nil {
		d.wg.Go(func() { d.mq.Run(cctx) })
	}
	go func() { defer d.wg.Done(); d.dispatch(cctx) }()
	go func() { defer d.wg.Done(); d.receive(cctx) }()
	go func() { defer d.wg.Done(); _ = d.owner.Run(cctx) }()
	if err := d.owner.Create(start); err != nil {
		d.close()
		return nil, fmt.Errorf("testnet: %s: mailbox create: %w", d.name, err)
	}
	fmt.Fprintf(t.cfg.Progress, "[%5.1fs] %s: mailbox created\n", time.Since(t.start).Seconds(), d.name)
	if d.mq != nil {
		// Create stocked a few SURBs; chunks need many more.
		d.wg.Go(func() {
			if err := d.mq.Stock(cctx); err != nil && cctx.Err() == nil {
				d.t.cfg.Logger.Warn("mailbox stock", "client", d.name, "err", err)
			}
		})
	}
	return d, nil
}

func (d *demoClient) close() error {
	d.stop()
	d.wg.Wait() // the queue's Run unplugs it from the client
	err := d.c.Close()
	if d.mq != nil {
		err = errors.Join(err, d.mq.Close())
	}
	return err
}

// dispatch routes the replies the mix client opens: pushes and answers of
// the client's own mailbox node, answers to its direct puts, and the rest
// (acks through the SURBs its queue packed) to its queue.
func (d *demoClient) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-d.c.Receive():
			if d.owner.Handle(ctx, r.Payload) {
				continue
			}
			d.mu.Lock()
			out := d.pending[r.SURB]
			delete(d.pending, r.SURB)
			d.mu.Unlock()
			if out == nil {
				if d.mq != nil {
					d.mq.HandleReply(r.Payload)
				}
				continue
			}
			if _, err := mailbox.DecodeAnswer(d.codec, r.Payload); err != nil {
				d.t.cfg.Logger.Warn("put refused", "client", d.name, "err", err)
				continue
			}
			out.ackOnce.Do(func() { close(out.acked) })
		}
	}
}

// receive opens the messages the mailbox delivers.
func (d *demoClient) receive(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-d.owner.Messages():
			for _, sealed := range d.handleStored(m.Data) {
				d.accept(sealed)
			}
		}
	}
}

// accept opens a sealed message that reached d and records it.
func (d *demoClient) accept(sealed []byte) {
	msg, err := d.open(sealed)
	if err != nil {
		d.t.cfg.Logger.Warn("undecryptable message", "client", d.name, "err", err)
		return
	}
	now := time.Now()
	lat := now.Sub(time.Unix(0, msg.Sent))
	d.mu.Lock()
	d.inbox = append(d.inbox, Message{ID: msg.ID, From: msg.From, To: d.name, Text: msg.Text, Status: "delivered",
		Latency: lat.Seconds(), At: now.Format(time.TimeOnly)})
	if len(d.inbox) > 200 {
		d.inbox = d.inbox[len(d.inbox)-200:]
	}
	d.mu.Unlock()
	d.t.delivered(msg.ID, lat)
}

// seal encrypts a message to d.
func (d *demoClient) seal(m demoMessage) ([]byte, error) {
	plain, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	s, err := suite.NewSender(d.pub, hpkeInfo)
	if err != nil {
		return nil, err
	}
	enc, sealer, err := s.Setup(rand.Reader)
	if err != nil {
		return nil, err
	}
	ct, err := sealer.Seal(plain, nil)
	if err != nil {
		return nil, err
	}
	return append(enc, ct...), nil
}

// open decrypts a message sealed to d.
func (d *demoClient) open(b []byte) (demoMessage, error) {
	var m demoMessage
	n := int(hpke.KEM_X25519_HKDF_SHA256.Scheme().CiphertextSize())
	if len(b) < n {
		return m, errors.New("short message")
	}
	r, err := suite.NewReceiver(d.priv, hpkeInfo)
	if err != nil {
		return m, err
	}
	opener, err := r.Setup(b[:n])
	if err != nil {
		return m, err
	}
	plain, err := opener.Open(b[n:], nil)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(plain, &m)
}

// send seals text for to and queues it for to's mailbox: d's queue sends
// it as RaptorQ chunks until to's queue acknowledges it. With
// Config.DirectPuts it is put into to's mailbox whole instead, again until
// the mailbox node acknowledges it (stored, fsynced) or maxAttempts fail;
// the attempts go on in the background until the client closes.
func (d *demoClient) send(to *demoClient, text string) (*outgoing, error) {
	d.mu.Lock()
	d.seq++
	id := fmt.Sprintf("%s-%d-%s", d.name, d.seq, hex.EncodeToString(randBytes(3)))
	d.mu.Unlock()
	now := time.Now()
	sealed, err := to.seal(demoMessage{ID: id, From: d.name, Sent: now.UnixNano(), Text: text})
	if err != nil {
		return nil, err
	}
	if d.mq == nil && len(sealed) > mailbox.MaxPut(d.codec) {
		return nil, fmt.Errorf("testnet: message too long (%d bytes sealed, at most %d)", len(sealed), mailbox.MaxPut(d.codec))
	}
	out := &outgoing{Message: Message{ID: id, From: d.name, To: to.name, Text: text, Status: "queued", At: now.Format(time.TimeOnly)},
		from: d, to: to, sealed: sealed, sent: now, acked: make(chan struct{})}
	if d.mq != nil {
		// d.mu is held across Put so that the queue's first packet and
		// outcome find the message registered.
		d.mu.Lock()
		qid, err := d.mq.Put(d.ctx, to.node, to.box, sealed)
		if err != nil {
			d.mu.Unlock()
			return nil, fmt.Errorf("testnet: %w", err)
		}
		d.byMsg[qid] = out
		d.addSentLocked(out)
		d.mu.Unlock()
		d.t.track(out)
		return out, nil
	}
	d.mu.Lock()
	d.addSentLocked(out)
	d.mu.Unlock()
	d.t.track(out)
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.deliver(d.ctx, out) }()
	return out, nil
}

// addSentLocked lists out among d's sent messages. d.mu held.
func (d *demoClient) addSentLocked(out *outgoing) {
	d.sent = append(d.sent, out)
	if len(d.sent) > 200 {
		d.sent = d.sent[len(d.sent)-200:]
	}
}

// deliver puts out until it is acknowledged (Config.DirectPuts).
func (d *demoClient) deliver(ctx context.Context, out *outgoing) {
	// Forward route, mailbox work and the answer's route through six mixes.
	wait := 2*time.Second + 20*d.t.cfg.MeanDelay
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		surbID, err := mailbox.Put(ctx, d.c, d.codec, to(out).node, to(out).box, demoType, out.sealed)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.t.cfg.Logger.Debug("put", "client", d.name, "err", err)
		} else {
			d.mu.Lock()
			d.pending[surbID] = out
			if out.Status == "queued" {
				out.Status = "sent"
			}
			d.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-out.acked:
			d.mu.Lock()
			if out.Status != "delivered" {
				out.Status = "stored"
			}
			d.mu.Unlock()
			return
		case <-time.After(wait):
			wait *= 2
		}
	}
	d.mu.Lock()
	lost := out.Status != "delivered"
	if lost {
		out.Status = "lost"
	}
	d.mu.Unlock()
	if lost {
		d.t.lost(out.ID)
	}
}

func to(out *outgoing) *demoClient { return out.to }

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// state returns the client's part of the dashboard.
func (d *demoClient) state() ClientState {
	d.mu.Lock()
	defer d.mu.Unlock()
	home := d.c.Home()
	s := ClientState{Name: d.name, Home: d.t.nodeName(home)}
	s.Inbox = append(s.Inbox, d.inbox...)
	for _, o := range d.sent {
		s.Sent = append(s.Sent, o.Message)
	}
	return s
}
