package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/strata-mix/strata/client"
	"github.com/strata-mix/strata/mailbox"
	"github.com/strata-mix/strata/queue"
	"github.com/strata-mix/strata/sphinx"
)

// A MailQueue carries messages through package queue over mailboxes
// (docs/queue.md, "Over mailboxes"):
//
//   - a queue.Recipient is a mailbox: its node id (32 bytes) followed by
//     its mailbox id (16 bytes) (MailRecipient);
//   - each queue packet to a recipient is one mailbox Put (OpPut) into that
//     mailbox, without an answer SURB: the queue's own end-to-end acks
//     replace the node's "stored" answer, so a chunk costs one packet, not
//     two, and the SURB's room goes to symbols. The queue's payload size is
//     what a Put may carry and the node may push back in one delivery;
//   - the recipient's mailbox.Owner receives the stored chunks (pushed
//     through its stocked SURBs, or fetched) and hands them to
//     HandleStored, which feeds its queue; the queue acks through the
//     SURBs the sender packed with its chunks, and those replies reach the
//     sender's client.Receive, where the caller's dispatch hands whatever
//     is not its mailbox node's answer to HandleReply;
//   - the queue's loss estimate follows the client's loop stream
//     (Stats.RecentLoopLoss), so repair overhead follows the measured loss;
//   - every chunk is a stored message pushed through one SURB of the
//     owner's stock, so the owner restocks as chunks arrive (MailQueueStock,
//     restockEvery, restockSURBs).
//
// Both the testnet's demo clients and node.Chat use it.

// MailQueueStock is how many SURBs an owner whose mailbox receives queue
// chunks keeps at its node (mailbox.OwnerConfig.Stock) and stocks after
// creating it: every chunk spends one.
const MailQueueStock = 32

// Queue chunks are many small stored messages, each pushed through one SURB
// of the mailbox's stock, and pushes lost on the way spend SURBs too. The
// node asks for more when its stock runs low, but that request can be lost;
// so every restockEvery messages received the owner sends restockSURBs more
// (about what the pushes spent at 50 % return loss).
const (
	restockEvery = 4
	restockSURBs = 10
)

// MailQueueForwardDelay is the expected latency of a queue chunk from its
// payload slot to the recipient's queue at mean per-hop delay mean: the
// forward route and the mailbox node's push back through the owner's SURB
// (eight hops), plus a second for slot waits and processing
// (queue.Config.ForwardDelay).
func MailQueueForwardDelay(mean time.Duration) time.Duration { return time.Second + 8*mean }

// MailQueueConfig configures a MailQueue.
type MailQueueConfig struct {
	// Path is the queue's bbolt file: messages queued survive a restart
	// there and are resent until acked. Required.
	Path string
	// Client is the mix client whose payload stream carries the queue's
	// packets (Run plugs the queue in as its Source). Required.
	Client *client.Client
	// Owner is the owner side of this client's own mailbox: it is
	// restocked as chunks arrive. Required.
	Owner *mailbox.Owner
	// Codec is the mailbox codec; Type the mailbox message type of the
	// Puts carrying chunks.
	Codec mailbox.Codec
	Type  mailbox.Type
	// ForwardDelay, MaxBackoff, Deadline and MaxMessage: see queue.Config.
	ForwardDelay, MaxBackoff, Deadline time.Duration
	MaxMessage                         int
	// OnOutcome learns the fate of every queued message (queue.Config).
	OnOutcome func(queue.Outcome)
	// OnSent, if set, sees the payload of every chunk packet as it leaves
	// (queue.Parse lists its chunks). It must not block.
	OnSent func(payload []byte)
	Logger *slog.Logger
}

// MailQueue is a queue.Queue whose packets travel as mailbox Puts (see
// above).
type MailQueue struct {
	cfg     MailQueueConfig
	log     *slog.Logger
	q       *queue.Queue
	restock chan struct{}

	mu  sync.Mutex
	got int
}

// MailRecipient names a mailbox as a queue recipient.
func MailRecipient(node sphinx.NodeID, box mailbox.ID) queue.Recipient {
	return queue.Recipient(string(node[:]) + string(box[:]))
}

// ParseMailRecipient is MailRecipient's inverse.
func ParseMailRecipient(r queue.Recipient) (sphinx.NodeID, mailbox.ID, error) {
	var n sphinx.NodeID
	var id mailbox.ID
	if len(r) != len(n)+len(id) {
		return n, id, fmt.Errorf("node: queue recipient of %d bytes", len(r))
	}
	copy(n[:], r)
	copy(id[:], r[len(n):])
	return n, id, nil
}

// MailQueuePayloadSize is how much of a packet the queue may fill: a Put of
// type typ without SURBs must fit in the codec's requests, and the stored
// message in one delivery of the node.
func MailQueuePayloadSize(codec mailbox.Codec, typ mailbox.Type) (int, error) {
	b, err := codec.EncodeRequest(&mailbox.Request{Op: mailbox.OpPut, Type: typ}, nil)
	if err != nil {
		return 0, fmt.Errorf("node: put overhead: %w", err)
	}
	return min(codec.MaxSize-len(b), codec.MaxSize-mailbox.DeliverOverhead), nil
}

// OpenMailQueue opens the queue in cfg.Path; Run sends what it holds.
func OpenMailQueue(cfg MailQueueConfig) (*MailQueue, error) {
	if cfg.Client == nil || cfg.Owner == nil {
		return nil, errors.New("node: mail queue: Client and Owner are required")
	}
	size, err := MailQueuePayloadSize(cfg.Codec, cfg.Type)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q, err := queue.Open(queue.Config{
		Path: cfg.Path, PayloadSize: size, SURBs: cfg.Client,
		ForwardDelay: cfg.ForwardDelay, MaxBackoff: cfg.MaxBackoff, Deadline: cfg.Deadline, MaxMessage: cfg.MaxMessage,
		OnOutcome: cfg.OnOutcome, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("node: mail queue: %w", err)
	}
	return &MailQueue{cfg: cfg, log: log, q: q, restock: make(chan struct{}, 1)}, nil
}

// Queue is the underlying queue (for its Stats).
func (mq *MailQueue) Queue() *queue.Queue { return mq.q }

// Put queues msg (Reliable) for the mailbox box at node. It returns once
// the message is on disk.
func (mq *MailQueue) Put(ctx context.Context, node sphinx.NodeID, box mailbox.ID, msg []byte) (queue.MsgID, error) {
	return mq.PutClass(ctx, node, box, msg, queue.Reliable)
}

// PutClass queues msg in class c for the mailbox box at node: Reliable for
// what must arrive (resent until acked), Fast for what is worthless once
// late (one round, no SURB, no ack, no resend; its outcome is "sent"). It
// returns once the message is on disk.
func (mq *MailQueue) PutClass(ctx context.Context, node sphinx.NodeID, box mailbox.ID, msg []byte, c queue.Class) (queue.MsgID, error) {
	id, err := mq.q.Put(ctx, MailRecipient(node, box), msg, c)
	if err != nil {
		return id, fmt.Errorf("node: mail queue: %w", err)
	}
	return id, nil
}

// Run plugs the queue into the client's payload stream, runs it, feeds it
// the loop stream's loss and restocks the owner's mailbox as chunks arrive,
// until ctx ends; then it unplugs the queue.
func (mq *MailQueue) Run(ctx context.Context) {
	mq.cfg.Client.SetSource(queue.Source{Queue: mq.q, Route: mq.route})
	defer mq.cfg.Client.SetSource(nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mq.q.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			mq.log.Warn("queue stopped", "err", err)
		}
	})
	wg.Go(func() { mq.restockLoop(ctx) })
	defer wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			mq.q.SetLoss(mq.cfg.Client.Stats().RecentLoopLoss)
		}
	}
}

// Close closes the queue's database. Stop Run first.
func (mq *MailQueue) Close() error { return mq.q.Close() }

// Stock sends the owner's node MailQueueStock SURBs (after creating the
// mailbox: Create stocks only a few).
func (mq *MailQueue) Stock(ctx context.Context) error {
	return mq.cfg.Owner.Stock(ctx, MailQueueStock)
}

// route turns a queue packet into what the client sends: acks through the
// SURB they answer, chunks as a Put into the recipient's mailbox.
func (mq *MailQueue) route(p queue.Packet) (client.Destination, []byte, bool) {
	if p.SURB != nil {
		dest, err := mq.cfg.Client.ViaSURB(p.SURB)
		if err != nil {
			mq.log.Debug("queue ack: bad SURB", "err", err)
			return client.Destination{}, nil, false
		}
		return dest, p.Payload, true
	}
	node, box, err := ParseMailRecipient(p.To)
	if err != nil {
		mq.log.Warn("queue packet", "err", err)
		return client.Destination{}, nil, false
	}
	b, err := mq.cfg.Codec.EncodeRequest(&mailbox.Request{Op: mailbox.OpPut, Mailbox: box, Type: mq.cfg.Type, Message: p.Payload}, nil)
	if err != nil {
		mq.log.Warn("queue packet", "err", err)
		return client.Destination{}, nil, false
	}
	if mq.cfg.OnSent != nil {
		mq.cfg.OnSent(p.Payload)
	}
	return client.ToMailbox(node), b, true
}

// HandleReply takes a SURB reply that is not the own mailbox node's answer:
// the queue's acks.
func (mq *MailQueue) HandleReply(payload []byte) {
	if _, err := mq.q.Handle("acks", payload); err != nil {
		mq.log.Debug("reply", "err", err)
	}
}

// HandleStored takes a message the own mailbox delivered: queue chunks
// (and SURBs) for the queue, which returns the messages they completed.
// Every stored item reaches the queue with from "mailbox": the queue's
// receiver limits are per stream id, the only thing that tells senders
// apart until items are sealed (docs/queue.md, "Receiver limits").
// A stored message that is not a queue payload (a whole message Put
// directly) is returned as is. Every restockEvery calls the owner is
// restocked.
func (mq *MailQueue) HandleStored(data []byte) [][]byte {
	mq.mu.Lock()
	mq.got++
	due := mq.got%restockEvery == 0
	mq.mu.Unlock()
	if due {
		select {
		case mq.restock <- struct{}{}:
		default:
		}
	}
	msgs, err := mq.q.Handle("mailbox", data)
	if err == nil || len(msgs) > 0 {
		out := make([][]byte, 0, len(msgs))
		for _, m := range msgs {
			out = append(out, m.Body)
		}
		if err != nil {
			mq.log.Debug("queue chunk", "err", err)
		}
		return out
	}
	if !errors.Is(err, queue.ErrPayload) {
		mq.log.Debug("queue chunk", "err", err)
		return nil
	}
	return [][]byte{data}
}

// restockLoop stocks the owner's mailbox at each signal until ctx ends.
func (mq *MailQueue) restockLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-mq.restock:
			if err := mq.cfg.Owner.Stock(ctx, restockSURBs); err != nil && ctx.Err() == nil {
				mq.log.Warn("mailbox stock", "err", err)
			}
		}
	}
}
