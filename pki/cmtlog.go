package pki

import (
	"context"
	"log/slog"

	cmtlog "github.com/cometbft/cometbft/libs/log"
)

// cmtLogger hands CometBFT's logs to slog. CometBFT's Info is chatty (a
// line per block step), so it is logged at slog's Debug level; its Error
// stays an error.
type cmtLogger struct{ l *slog.Logger }

func (c cmtLogger) Debug(msg string, kv ...any) { c.log(slog.LevelDebug-4, msg, kv) }
func (c cmtLogger) Info(msg string, kv ...any)  { c.log(slog.LevelDebug, msg, kv) }
func (c cmtLogger) Error(msg string, kv ...any) { c.log(slog.LevelError, msg, kv) }

func (c cmtLogger) With(kv ...any) cmtlog.Logger { return cmtLogger{c.l.With(kv...)} }

func (c cmtLogger) log(level slog.Level, msg string, kv []any) {
	if c.l.Enabled(context.Background(), level) {
		c.l.Log(context.Background(), level, msg, kv...)
	}
}
