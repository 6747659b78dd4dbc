package testnet

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"
)

//go:embed web
var webFS embed.FS

// Network is what the dashboard shows and drives: a snapshot of the
// testnet and a way to send a message between two demo clients.
type Network interface {
	State() State
	Send(ctx context.Context, from, to int, text string) (id string, err error)
}

// State is a snapshot of the testnet, served as JSON by /api/state.
type State struct {
	ChainID   string        `json:"chain_id"`
	Height    int64         `json:"height"`
	Epoch     uint64        `json:"epoch"`
	Uptime    float64       `json:"uptime_s"`
	Layers    [][]NodeState `json:"layers"`
	Edges     []Edge        `json:"edges"`
	Mailboxes []NodeState   `json:"mailboxes"`
	Clients   []ClientState `json:"clients"`
	Messages  Counters      `json:"messages"`
	Latency   Histogram     `json:"latency"`
}

// NodeState describes one relay or mailbox node.
type NodeState struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Layer   int    `json:"layer"`
	Metrics string `json:"metrics"`
	// PacketsIn and PacketsOut are totals; real and cover packets look
	// alike, so a node cannot tell them apart and neither can we.
	PacketsIn   uint64  `json:"packets_in"`
	PacketsOut  uint64  `json:"packets_out"`
	RateIn      float64 `json:"rate_in"`
	ReplayDrops uint64  `json:"replay_drops"`
	Up          bool    `json:"up"`
}

// Edge is a restricted-route link from one relay to a relay of the next
// stratum, by node id.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// ClientState describes a demo client and its inbox.
type ClientState struct {
	Name  string    `json:"name"`
	Home  string    `json:"home"`
	Inbox []Message `json:"inbox"`
	Sent  []Message `json:"sent"`
}

// Message is a demo message as a client sees it.
type Message struct {
	ID      string  `json:"id"`
	From    string  `json:"from"`
	To      string  `json:"to"`
	Text    string  `json:"text"`
	Status  string  `json:"status"` // queued, sent, delivered
	Latency float64 `json:"latency_s,omitempty"`
	At      string  `json:"at"`
}

// Counters are the testnet's end-to-end message counts.
type Counters struct {
	Sent      uint64  `json:"sent"`
	Delivered uint64  `json:"delivered"`
	Lost      uint64  `json:"lost"`
	P50       float64 `json:"p50_s"`
	P99       float64 `json:"p99_s"`
}

// Histogram is the end-to-end latency histogram: Counts[i] messages took
// at most Bounds[i] seconds (and more than Bounds[i-1]); the last count is
// everything above the last bound.
type Histogram struct {
	Bounds []float64 `json:"bounds_s"`
	Counts []uint64  `json:"counts"`
}

// maxSendText bounds what the send box may post.
const maxSendText = 1000

// sendRequest is the body of POST /api/send.
type sendRequest struct {
	From int    `json:"from"`
	To   int    `json:"to"`
	Text string `json:"text"`
}

// Dashboard returns the testnet's web dashboard: the page (embedded, no
// external resources), GET /api/state and POST /api/send.
func Dashboard(n Network, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	static, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err := json.NewEncoder(w).Encode(n.State()); err != nil {
			log.Debug("dashboard: writing state", "err", err)
		}
	})
	mux.HandleFunc("POST /api/send", func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeSend(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		id, err := n.Send(ctx, req.From, req.To, req.Text)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id})
	})
	return mux
}

// decodeSend reads and checks a send request.
func decodeSend(body io.Reader) (sendRequest, error) {
	var req sendRequest
	dec := json.NewDecoder(io.LimitReader(body, 4*maxSendText+256))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("bad request: %w", err)
	}
	if dec.More() {
		return req, errors.New("bad request: trailing data")
	}
	switch {
	case req.Text == "":
		return req, errors.New("bad request: empty message")
	case len(req.Text) > maxSendText:
		return req, fmt.Errorf("bad request: message longer than %d bytes", maxSendText)
	case !utf8.ValidString(req.Text):
		return req, errors.New("bad request: message is not UTF-8")
	case req.From == req.To:
		return req, errors.New("bad request: sender and recipient are the same client")
	}
	return req, nil
}
