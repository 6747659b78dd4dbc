package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-mix/strata/e2e"
	"github.com/strata-mix/strata/node"
)

const chatHelp = `commands:
  /card              print my contact code
  /contacts          list contacts
  /add CODE          import a contact code and open a 1:1 chat
  /rooms             list rooms
  /room NAME         switch to a room (by name, id or contact); creates it if unknown
  /invite NAME...    add contacts (by name, or a contact code) to the current room
  /remove NAME...    remove members from the current room
  /leave             leave the current room
  /history           print the current room's history
  /quit              exit
anything else is sent to the current room`

func newChatCmd() *cobra.Command {
	o := &clientOpts{}
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "Line-based interactive chat over the mixnet (after strata client init)",
		Long: `chat starts the user in --data-dir (made by "strata client init") and reads
commands and messages from standard input, one per line; incoming messages
and delivery status (queued, sent, acked) are printed as they happen.

` + chatHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ch, err := o.start(cmd)
			if err != nil {
				return err
			}
			defer ch.Close()
			s := &chatSession{ch: ch, out: cmd.OutOrStdout()}
			return s.run(cmd.Context(), cmd.InOrStdin())
		},
	}
	o.register(cmd)
	return cmd
}

// chatSession is one interactive session.
type chatSession struct {
	ch   *node.Chat
	mu   sync.Mutex // serializes output and guards room
	out  io.Writer
	room e2e.RoomID
}

func (s *chatSession) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, format, args...)
}

func (s *chatSession) current() e2e.RoomID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.room
}

func (s *chatSession) roomName(id e2e.RoomID) string {
	info, err := s.ch.Manager().Room(id)
	if err != nil || info.Name == "" {
		return id.String()[:8]
	}
	return info.Name
}

// events prints what arrives until ctx ends.
func (s *chatSession) events(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.ch.Events():
			name := s.roomName(ev.Room)
			switch ev.Kind {
			case e2e.EventMessage:
				s.printf("[%s] %s: %s\n", name, ev.From.Name, ev.Text)
			case e2e.EventJoined:
				s.printf("* joined room %s (%s)\n", name, ev.Room)
			case e2e.EventChanged:
				s.printf("* room %s changed (epoch %d)\n", name, ev.Epoch)
			case e2e.EventRemoved:
				s.printf("* removed from room %s\n", name)
			case e2e.EventRollback:
				s.printf("* room %s: a concurrent change won; redone\n", name)
			case node.EventAcked:
				s.printf("  #%d in %s acked\n", ev.Seq, name)
			}
		}
	}
}

func (s *chatSession) run(ctx context.Context, in io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); s.events(ctx) }()
	s.printf("strata chat — %s. /help for commands.\n", s.ch.Manager().Identity().Name)
	if rooms := s.ch.Manager().Rooms(); len(rooms) > 0 {
		s.room = rooms[0].ID
		s.printf("current room: %s\n", rooms[0].Name)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				// End of input: let the last messages go out and, if
				// the recipients are online, be acknowledged.
				s.drain(ctx)
				return nil
			}
			if quit := s.line(ctx, strings.TrimSpace(line)); quit {
				s.drain(ctx)
				return nil
			}
		}
	}
}

// line handles one input line; it reports whether to quit.
func (s *chatSession) line(ctx context.Context, line string) bool {
	if line == "" {
		return false
	}
	m := s.ch.Manager()
	if !strings.HasPrefix(line, "/") {
		room := s.current()
		if room == "" {
			s.printf("no current room: /add a contact or /room NAME first\n")
			return false
		}
		seq, err := s.ch.Send(ctx, room, line)
		if err != nil {
			s.printf("! not sent: %v\n", err)
			return false
		}
		s.printf("  #%d sent\n", seq)
		return false
	}
	cmd, rest, _ := strings.Cut(line, " ")
	args := strings.Fields(rest)
	need := func(n int) bool {
		if len(args) < n {
			s.printf("! %s needs an argument; /help\n", cmd)
			return false
		}
		return true
	}
	var err error
	switch cmd {
	case "/help":
		s.printf("%s\n", chatHelp)
	case "/quit", "/exit":
		return true
	case "/card":
		var code string
		if code, err = s.ch.Card(); err == nil {
			s.printf("%s\n", code)
		}
	case "/contacts":
		for _, c := range m.Contacts() {
			s.printf("  %s\t%x\n", c.Name, c.Key[:8])
		}
	case "/add":
		if !need(1) {
			return false
		}
		var c *e2e.Card
		if c, err = e2e.ParseCode(strings.Join(args, "")); err == nil {
			var id e2e.RoomID
			if id, err = m.AddContact(ctx, c); err == nil {
				s.mu.Lock()
				s.room = id
				s.mu.Unlock()
				s.printf("* contact %s added; current room is your chat\n", c.Name)
			}
		}
	case "/rooms":
		s.mu.Lock()
		printRooms(s.out, m)
		s.mu.Unlock()
	case "/room":
		if !need(1) {
			return false
		}
		name := strings.Join(args, " ")
		var id e2e.RoomID
		if id, err = findRoom(m, name); err != nil {
			if id, err = m.CreateRoom(name); err == nil {
				s.printf("* room %s created\n", name)
			}
		}
		if err == nil {
			s.mu.Lock()
			s.room = id
			s.mu.Unlock()
			s.printf("current room: %s\n", s.roomName(id))
		}
	case "/invite", "/remove":
		if !need(1) {
			return false
		}
		room := s.current()
		if room == "" {
			s.printf("! no current room\n")
			return false
		}
		keys, kerr := contactKeys(m, args)
		if kerr != nil {
			err = kerr
			break
		}
		if cmd == "/invite" {
			err = m.Invite(ctx, room, keys...)
		} else {
			err = m.Remove(ctx, room, keys...)
		}
		if err == nil {
			s.printf("* done\n")
		}
	case "/leave":
		room := s.current()
		if room == "" {
			s.printf("! no current room\n")
			return false
		}
		if err = m.Leave(ctx, room); err == nil {
			s.printf("* asked to leave %s\n", s.roomName(room))
		}
	case "/history":
		room := s.current()
		if room == "" {
			s.printf("! no current room\n")
			return false
		}
		var hist []e2e.Entry
		if hist, err = m.History(room); err == nil {
			name := s.roomName(room)
			s.mu.Lock()
			for _, e := range hist {
				printEntry(s.out, name, e, s.ch.Status(room, e))
			}
			s.mu.Unlock()
		}
	default:
		s.printf("! unknown command %s; /help\n", cmd)
	}
	if err != nil {
		s.printf("! %v\n", err)
	}
	return false
}

// drain waits for the session's messages to go out, then briefly for their
// acknowledgements; what is left is sent again at the next start.
func (s *chatSession) drain(ctx context.Context) {
	waitDelivery(ctx, s.ch, 30*time.Second, ackWait)
}
