package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hclogAdapter is the one boundary where Raft's and memberlist's logging
// enters log/slog.
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{l: l, name: name}
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv := toSlog(level)
	ctx := context.Background()
	if !h.l.Enabled(ctx, lv) {
		return
	}
	all := append(append([]any{keyComponent, h.name}, h.args...), args...)
	for i := 1; i < len(all); i += 2 {
		all[i] = hcValue(all[i])
	}
	h.l.Log(ctx, lv, msg, all...)
}

// hcValue renders what Raft logs as text an operator reads: hclog.Fmt
// values formatted, servers as "name address suffrage".
func hcValue(v any) any {
	switch x := v.(type) {
	case hclog.Format:
		if len(x) == 2 {
			if s, ok := x[1].([]raft.Server); ok {
				return servers(s)
			}
		}
		if len(x) > 0 {
			if f, ok := x[0].(string); ok {
				return fmt.Sprintf(f, x[1:]...)
			}
		}
		return fmt.Sprint(x...)
	case []raft.Server:
		return servers(x)
	case raft.Server:
		return server(x)
	}
	return v
}

func servers(ss []raft.Server) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = server(s)
	}
	return strings.Join(out, ", ")
}

func server(s raft.Server) string {
	return fmt.Sprintf("%s %s %s", s.ID, s.Address, strings.ToLower(s.Suffrage.String()))
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(l hclog.Level) bool {
	return h.l.Enabled(context.Background(), toSlog(l))
}
func (h *hclogAdapter) IsTrace() bool        { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool        { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool         { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool         { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool        { return h.enabled(hclog.Error) }
func (h *hclogAdapter) ImpliedArgs() []any   { return h.args }
func (h *hclogAdapter) Name() string         { return h.name }
func (h *hclogAdapter) SetLevel(hclog.Level) {}
func (h *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Error
}

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: h.l, name: h.name, args: append(append([]any(nil), h.args...), args...)}
}

func (h *hclogAdapter) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return &hclogAdapter{l: h.l, name: name, args: h.args}
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: h.l, name: name, args: h.args}
}

func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(nil), "", 0)
}

// StandardWriter turns memberlist's "[WARN] memberlist: ..." lines into
// records at the level their prefix names.
func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return stdWriter{h}
}

type stdWriter struct{ h *hclogAdapter }

func (w stdWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := string(line)
		level := hclog.Info
		for prefix, l := range map[string]hclog.Level{"[TRACE]": hclog.Trace, "[DEBUG]": hclog.Debug, "[INFO]": hclog.Info, "[WARN]": hclog.Warn, "[ERR]": hclog.Error, "[ERROR]": hclog.Error} {
			if i := strings.Index(s, prefix); i >= 0 {
				level, s = l, strings.TrimSpace(s[i+len(prefix):])
				break
			}
		}
		w.h.Log(level, s)
	}
	return len(p), nil
}
