package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-mix/strata/e2e"
	"github.com/strata-mix/strata/node"
	"github.com/strata-mix/strata/sphinx"
)

// clientOpts are the flags every client command shares.
type clientOpts struct {
	dataDir, passFile, logLevel string
	timeout                     time.Duration
}

func (o *clientOpts) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.dataDir, "data-dir", "strata-client", "the user's data directory (keys, mailbox, encrypted store)")
	f.StringVar(&o.passFile, "passphrase-file", "", "file whose first line is the store passphrase (default $STRATA_PASSPHRASE, else empty)")
	f.StringVar(&o.logLevel, "log-level", "off", "log level to stderr: off, debug, info, warn, error (failures are reported either way)")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to wait for the network (topology, mailbox creation)")
}

func (o *clientOpts) config(cmd *cobra.Command) (node.ChatConfig, error) {
	logger := slog.New(slog.DiscardHandler)
	if o.logLevel != "off" {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(o.logLevel)); err != nil {
			return node.ChatConfig{}, fmt.Errorf("--log-level %q: want off, debug, info, warn or error", o.logLevel)
		}
		logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lv}))
	}
	pass := os.Getenv("STRATA_PASSPHRASE")
	if o.passFile != "" {
		b, err := os.ReadFile(o.passFile)
		if err != nil {
			return node.ChatConfig{}, fmt.Errorf("--passphrase-file: %w", err)
		}
		pass, _, _ = strings.Cut(string(b), "\n")
		pass = strings.TrimSuffix(pass, "\r")
	}
	if o.dataDir == "" {
		return node.ChatConfig{}, errors.New("--data-dir is empty")
	}
	return node.ChatConfig{DataDir: o.dataDir, Passphrase: pass, Logger: logger}, nil
}

// start starts the user on the network.
func (o *clientOpts) start(cmd *cobra.Command) (*node.Chat, error) {
	cfg, err := o.config(cmd)
	if err != nil {
		return nil, err
	}
	if !node.ChatInitialized(cfg.DataDir) {
		return nil, fmt.Errorf("%s holds no user: run strata client init first", cfg.DataDir)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	return node.StartChat(ctx, cfg)
}

// offline opens the user's store without the network.
func (o *clientOpts) offline(cmd *cobra.Command) (*e2e.Manager, func() error, error) {
	cfg, err := o.config(cmd)
	if err != nil {
		return nil, nil, err
	}
	return node.OpenChatOffline(cfg)
}

func newClientCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{
		Use:   "client",
		Short: "End-to-end encrypted messaging over the mixnet, one command at a time",
		Long: `client runs one user of end-to-end encrypted (MLS) messaging over the
mixnet, one scriptable command at a time. Each command starts the user from
--data-dir, does its work and stops. See also "strata chat".

  strata client init --data-dir alice --chain http://127.0.0.1:26657 \
      --trust-height 1 --trust-hash HASH --name alice   # the chain's trust root
  strata client chain --data-dir alice --add http://10.0.0.2:26657
  strata client card --data-dir alice            # prints alice's contact code
  strata client contact add --data-dir bob CODE  # bob opens a 1:1 chat with alice
  strata client send --data-dir bob alice "hello"
  strata client read --data-dir alice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	o.register(cmd)
	cmd.AddCommand(newClientInitCmd(o), newClientCardCmd(o), newClientContactCmd(o), newClientSendCmd(o),
		newClientReadCmd(o), newClientRoomsCmd(o), newClientHistoryCmd(o), newClientRoomCmd(o), newClientChainCmd(o))
	return cmd
}

func parseNodeID(s string) (sphinx.NodeID, error) {
	var id sphinx.NodeID
	if s == "" {
		return id, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("node id %q: want %d hex digits", s, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}

func newClientInitCmd(o *clientOpts) *cobra.Command {
	var chains []string
	var trustHash, name, home, box string
	var trustHeight int64
	var firstUse bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a user: keys, a mailbox on a mailbox node, the encrypted store",
		Long: `init makes a new user in --data-dir: a mix identity, a home relay and a
mailbox node chosen from the verified topology (or given), a mailbox created
there, and the encrypted e2e store.

The user verifies everything the chain says from a root of trust, the height
and hash of a block given with --trust-height and --trust-hash (the network's
operators publish it; strata validator start and strata testnet print it).
Without --trust-hash, init prints the latest block as the first --chain
endpoint reports it (cross-checked with the other --chain endpoints) and stops;
--trust-first-use trusts that block instead, which is only as safe as the
endpoints. --chain may be repeated (or take a comma-separated list): the user
reads through the first that answers and the others serve as witnesses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(chains) == 0 {
				return errors.New("client init: --chain is required (a validator's RPC, as strata testnet prints it)")
			}
			if name == "" || len(name) > 64 {
				return errors.New("client init: --name must have 1 to 64 bytes")
			}
			if trustHash != "" && firstUse {
				return errors.New("client init: --trust-hash and --trust-first-use exclude each other")
			}
			homeID, err := parseNodeID(home)
			if err != nil {
				return fmt.Errorf("client init: --home: %w", err)
			}
			boxID, err := parseNodeID(box)
			if err != nil {
				return fmt.Errorf("client init: --mailbox: %w", err)
			}
			cc := node.ChainConfig{RPCs: chains, TrustHeight: trustHeight, TrustHash: trustHash}
			if trustHash == "" {
				// The shape of the chain section is checked before asking
				// the endpoints.
				cc.TrustHeight = 0
			}
			if err := cc.Check(); err != nil {
				return fmt.Errorf("client init: %w", err)
			}
			cfg, err := o.config(cmd)
			if err != nil {
				return err
			}
			if node.ChatInitialized(cfg.DataDir) {
				return fmt.Errorf("client init: %s holds a user already", cfg.DataDir)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			if trustHash == "" {
				root, err := node.ReportedTrustRoot(ctx, chains)
				if err != nil {
					return fmt.Errorf("client init: no --trust-hash, and reading a block to propose failed: %w", err)
				}
				w := cmd.ErrOrStderr()
				fmt.Fprintf(w, "%s reports its latest block as height %d hash %s", root.From, root.Height, root.Hash)
				if len(root.Agree) > 0 {
					fmt.Fprintf(w, " (%d other endpoint(s) agree)", len(root.Agree))
				}
				fmt.Fprintln(w)
				for ep, err := range root.Unasked {
					fmt.Fprintf(w, "  not cross-checked with %s: %v\n", ep, err)
				}
				if !firstUse {
					fmt.Fprintf(w, "Nothing of it is verified. Check it with the network's operators, then run init again with\n"+
						"  --trust-height %d --trust-hash %s\n"+
						"or their published trust root, or with --trust-first-use to trust it as the endpoint reports it.\n", root.Height, root.Hash)
					return errors.New("client init: refusing to trust the chain without --trust-hash (or --trust-first-use)")
				}
				fmt.Fprintf(w, "trusting it on first use (--trust-first-use)\n")
				cc.TrustHeight, cc.TrustHash = root.Height, root.Hash
			}
			cfg.Chain, cfg.Name, cfg.Home, cfg.Mailbox = cc, name, homeID, boxID
			ch, err := node.StartChat(ctx, cfg)
			if err != nil {
				return err
			}
			defer ch.Close()
			a, h := ch.Address(), ch.Home()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "user %s made in %s: mailbox %x on node %x, home relay %x\n", name, cfg.DataDir, a.Mailbox[:4], a.Node[:8], h[:8])
			code, err := ch.Card()
			if err != nil {
				return err
			}
			fmt.Fprintln(out, code)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&chains, "chain", nil, "a validator's CometBFT RPC endpoint (required; repeat or comma-separate for several, in order of preference)")
	f.Int64Var(&trustHeight, "trust-height", 1, "height of the trusted block")
	f.StringVar(&trustHash, "trust-hash", "", "hash of the trusted block (64 hex digits); required unless --trust-first-use")
	f.BoolVar(&firstUse, "trust-first-use", false, "without --trust-hash: trust the latest block as the first --chain endpoint reports it")
	f.StringVar(&name, "name", "", "display name (required)")
	f.StringVar(&home, "home", "", "home relay's node id (hex; default: random)")
	f.StringVar(&box, "mailbox", "", "mailbox node's id (hex; default: random)")
	return cmd
}

func newClientCardCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "card",
		Short: "Print my contact code (with fresh one-time key packages)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, closeStore, err := o.offline(cmd)
			if err != nil {
				return err
			}
			defer closeStore()
			c, err := m.Card(4, nil)
			if err != nil {
				return err
			}
			code, err := c.Code()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), code)
			return nil
		},
	}
}

// ackWait is how long a command that sends waits, by default, for the
// recipients' acknowledgements: their queues acknowledge only while they
// are online, within a second or two.
const ackWait = 5 * time.Second

// flush waits for the messages of a command to go out, then up to d for
// the recipients' acknowledgements, and reports those still on their way:
// they stay queued in the data dir and are sent again at the next start.
func flush(cmd *cobra.Command, ch *node.Chat, d time.Duration) {
	unsent, unacked := waitDelivery(cmd.Context(), ch, 60*time.Second, d)
	switch {
	case unsent > 0:
		fmt.Fprintf(cmd.ErrOrStderr(), "%d message(s) not sent yet (they go out at the next start)\n", unsent)
	case unacked > 0:
		fmt.Fprintf(cmd.ErrOrStderr(), "%d message(s) not acknowledged yet (recipients offline?); sent again at the next start\n", unacked)
	}
}

// waitDelivery waits up to sendWait for ch's queued messages to go out
// and then, if they all did, up to ackWait for their acknowledgements. It
// returns how many were not sent, or else how many are not acknowledged.
func waitDelivery(ctx context.Context, ch *node.Chat, sendWait, ackWait time.Duration) (unsent, unacked int) {
	sctx, scancel := context.WithTimeout(ctx, sendWait)
	unsent = ch.WaitSent(sctx)
	scancel()
	if unsent > 0 {
		return unsent, 0
	}
	actx, acancel := context.WithTimeout(ctx, ackWait)
	defer acancel()
	return 0, ch.Flush(actx)
}

func newClientContactCmd(o *clientOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contact",
		Short: "Add or list contacts",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var wait time.Duration
	add := &cobra.Command{
		Use:   "add CODE",
		Short: "Import a contact code and open a 1:1 chat with them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			card, err := e2e.ParseCode(args[0])
			if err != nil {
				return fmt.Errorf("contact add: %w", err)
			}
			ch, err := o.start(cmd)
			if err != nil {
				return err
			}
			defer ch.Close()
			room, err := ch.Manager().AddContact(cmd.Context(), card)
			if err != nil {
				return fmt.Errorf("contact add: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "contact %s added; chat room %s\n", card.Name, room)
			flush(cmd, ch, wait)
			return nil
		},
	}
	add.Flags().DurationVar(&wait, "wait", ackWait, "how long to wait for the contact's acknowledgement")
	list := &cobra.Command{
		Use:   "list",
		Short: "List contacts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, closeStore, err := o.offline(cmd)
			if err != nil {
				return err
			}
			defer closeStore()
			for _, c := range m.Contacts() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%x\n", c.Name, c.Key[:8])
			}
			return nil
		},
	}
	cmd.AddCommand(add, list)
	return cmd
}

// findRoom resolves a room by id (or a prefix of at least 4 hex digits),
// name, or the name of a contact whose 1:1 room it is.
func findRoom(m *e2e.Manager, target string) (e2e.RoomID, error) {
	var hits, direct []e2e.RoomID
	rooms := m.Rooms()
	for _, r := range rooms {
		if r.ID.String() == target || (len(target) >= 4 && strings.HasPrefix(r.ID.String(), target)) || r.Name == target {
			hits = append(hits, r.ID)
		}
		if len(r.Members) == 2 && !r.Removed {
			for _, mem := range r.Members {
				if mem.Name == target && !mem.Key.Equal(m.Identity().Public()) {
					direct = append(direct, r.ID)
				}
			}
		}
	}
	// A contact's name picks the 1:1 chat with them over rooms that took
	// their name (a room joined by Welcome is named after a contact in it).
	if len(hits) != 1 && len(direct) == 1 {
		return direct[0], nil
	}
	switch len(hits) {
	case 0:
		return "", fmt.Errorf("no room or contact %q (see strata client rooms)", target)
	case 1:
		return hits[0], nil
	}
	return "", fmt.Errorf("%q names %d rooms; use a room id", target, len(hits))
}

func newClientSendCmd(o *clientOpts) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "send CONTACT-OR-ROOM TEXT",
		Short: "Send a message to a room (by id or name) or a contact's 1:1 chat",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(args[1]) == "" {
				return errors.New("send: empty message")
			}
			ch, err := o.start(cmd)
			if err != nil {
				return err
			}
			defer ch.Close()
			room, err := findRoom(ch.Manager(), args[0])
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
			seq, err := ch.Send(cmd.Context(), room, args[1])
			if err != nil {
				return fmt.Errorf("send: %w", err)
			}
			flush(cmd, ch, wait)
			st := e2e.StatusSent
			if hist, err := ch.Manager().History(room); err == nil {
				for _, e := range hist {
					if e.Seq == seq && e.Outgoing {
						st = ch.Status(room, e)
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "#%d %s\n", seq, st)
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", ackWait, "how long to wait for the recipients' acknowledgements")
	return cmd
}

// readMarks is read.json: the last history entry read, per room.
type readMarks map[string]uint64

func loadMarks(dir string) readMarks {
	m := readMarks{}
	if b, err := os.ReadFile(filepath.Join(dir, "read.json")); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

func (m readMarks) save(dir string) error {
	b, _ := json.Marshal(m)
	return os.WriteFile(filepath.Join(dir, "read.json"), b, 0o600)
}

func printEntry(w io.Writer, room string, e e2e.Entry, st e2e.Status) {
	if e.Outgoing {
		fmt.Fprintf(w, "%s [%s] #%d me: %s (%s)\n", e.Time.Format(time.TimeOnly), room, e.Seq, e.Text, st)
		return
	}
	fmt.Fprintf(w, "%s [%s] #%d %s: %s\n", e.Time.Format(time.TimeOnly), room, e.Seq, e.FromName, e.Text)
}

func newClientReadCmd(o *clientOpts) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "read",
		Short: "Fetch the mailbox, wait briefly, print new messages with delivery status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wait < 0 {
				return errors.New("read: negative --wait")
			}
			ch, err := o.start(cmd)
			if err != nil {
				return err
			}
			defer ch.Close()
			out := cmd.OutOrStdout()
			timer := time.NewTimer(wait)
			defer timer.Stop()
		loop:
			for {
				select {
				case <-cmd.Context().Done():
					break loop
				case <-timer.C:
					break loop
				case ev := <-ch.Events():
					switch ev.Kind {
					case e2e.EventJoined:
						info, _ := ch.Manager().Room(ev.Room)
						fmt.Fprintf(out, "joined room %s (%s)\n", info.Name, ev.Room)
					case e2e.EventRemoved:
						fmt.Fprintf(out, "removed from room %s\n", ev.Room)
					}
				}
			}
			flush(cmd, ch, 5*time.Second)
			marks := loadMarks(o.dataDir)
			for _, r := range ch.Manager().Rooms() {
				hist, err := ch.Manager().History(r.ID)
				if err != nil {
					return err
				}
				k := r.ID.String()
				for _, e := range hist {
					if e.Seq < marks[k] {
						continue
					}
					printEntry(out, r.Name, e, ch.Status(r.ID, e))
					marks[k] = e.Seq + 1
				}
			}
			return marks.save(o.dataDir)
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Second, "how long to wait for messages")
	return cmd
}

func newClientRoomsCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "rooms",
		Short: "List my rooms",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, closeStore, err := o.offline(cmd)
			if err != nil {
				return err
			}
			defer closeStore()
			printRooms(cmd.OutOrStdout(), m)
			return nil
		},
	}
}

func printRooms(w io.Writer, m *e2e.Manager) {
	for _, r := range m.Rooms() {
		var names []string
		for _, mem := range r.Members {
			names = append(names, mem.Name)
		}
		state := ""
		if r.Removed {
			state = " (removed)"
		}
		fmt.Fprintf(w, "%s\t%s\tepoch %d\t%s%s\n", r.ID, r.Name, r.Epoch, strings.Join(names, ", "), state)
	}
}

func newClientHistoryCmd(o *clientOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "history CONTACT-OR-ROOM",
		Short: "Print a room's history with delivery status",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, closeStore, err := o.offline(cmd)
			if err != nil {
				return err
			}
			defer closeStore()
			room, err := findRoom(m, args[0])
			if err != nil {
				return err
			}
			status, err := node.ChatStatuses(o.dataDir)
			if err != nil {
				return err
			}
			info, _ := m.Room(room)
			hist, err := m.History(room)
			if err != nil {
				return err
			}
			for _, e := range hist {
				printEntry(cmd.OutOrStdout(), info.Name, e, status(room, e))
			}
			return nil
		},
	}
}

// contactKeys resolves contact names (or key prefixes) to keys; a contact
// code (strata1…) is imported first.
func contactKeys(m *e2e.Manager, names []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, n := range names {
		if strings.HasPrefix(strings.ToLower(n), "strata1") {
			c, err := e2e.ParseCode(n)
			if err != nil {
				return nil, err
			}
			if err := m.ImportContact(c); err != nil {
				return nil, err
			}
			keys = append(keys, c.Key)
			continue
		}
		var hit ed25519.PublicKey
		for _, c := range m.Contacts() {
			if c.Name == n || (len(n) >= 8 && strings.HasPrefix(hex.EncodeToString(c.Key), n)) {
				if hit != nil {
					return nil, fmt.Errorf("%q names several contacts; use a key prefix", n)
				}
				hit = c.Key
			}
		}
		if hit == nil {
			return nil, fmt.Errorf("no contact %q", n)
		}
		keys = append(keys, hit)
	}
	return keys, nil
}

func newClientRoomCmd(o *clientOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "room",
		Short: "Create rooms, invite and remove members, leave",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var wait time.Duration
	member := func(use, short string, min int, do func(ctx context.Context, ch *node.Chat, room e2e.RoomID, keys []ed25519.PublicKey) error) *cobra.Command {
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.MinimumNArgs(min),
			RunE: func(cmd *cobra.Command, args []string) error {
				ch, err := o.start(cmd)
				if err != nil {
					return err
				}
				defer ch.Close()
				room, err := findRoom(ch.Manager(), args[0])
				if err != nil {
					return err
				}
				keys, err := contactKeys(ch.Manager(), args[1:])
				if err != nil {
					return err
				}
				if err := do(cmd.Context(), ch, room, keys); err != nil {
					return err
				}
				flush(cmd, ch, wait)
				printRooms(cmd.OutOrStdout(), ch.Manager())
				return nil
			},
		}
		c.Flags().DurationVar(&wait, "wait", ackWait, "how long to wait for the recipients' acknowledgements")
		return c
	}
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a room with only me in it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(args[0]) == "" {
				return errors.New("room create: empty name")
			}
			m, closeStore, err := o.offline(cmd)
			if err != nil {
				return err
			}
			defer closeStore()
			id, err := m.CreateRoom(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	invite := member("invite ROOM CONTACT-OR-CODE...", "Add contacts (by name, or a contact code) to a room", 2, func(ctx context.Context, ch *node.Chat, room e2e.RoomID, keys []ed25519.PublicKey) error {
		return ch.Manager().Invite(ctx, room, keys...)
	})
	remove := member("remove ROOM CONTACT...", "Remove members from a room", 2, func(ctx context.Context, ch *node.Chat, room e2e.RoomID, keys []ed25519.PublicKey) error {
		return ch.Manager().Remove(ctx, room, keys...)
	})
	leave := member("leave ROOM", "Ask a room to remove me", 1, func(ctx context.Context, ch *node.Chat, room e2e.RoomID, _ []ed25519.PublicKey) error {
		return ch.Manager().Leave(ctx, room)
	})
	cmd.AddCommand(create, invite, remove, leave)
	return cmd
}
