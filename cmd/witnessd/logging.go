package main

import (
	"context"
	"log/slog"
	"slices"
)

// onceHandler writes each key once per line: a key set again, by a
// narrower logger's With or by the record itself, replaces the earlier
// value (component=raft under a logger with component=witnessd).
type onceHandler struct {
	next  slog.Handler
	attrs []slog.Attr
}

func (h *onceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *onceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &onceHandler{next: h.next, attrs: merge(h.attrs, as)}
}

// WithGroup hands the attributes so far to the next handler: keys inside
// a group are the group's own.
func (h *onceHandler) WithGroup(name string) slog.Handler {
	return &onceHandler{next: h.next.WithAttrs(h.attrs).WithGroup(name)}
}

func (h *onceHandler) Handle(ctx context.Context, r slog.Record) error {
	as := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool { as = append(as, a); return true })
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(merge(h.attrs, as)...)
	return h.next.Handle(ctx, out)
}

// merge returns base with each attribute of more replacing the one of the
// same key, or appended.
func merge(base, more []slog.Attr) []slog.Attr {
	out := slices.Clone(base)
	for _, a := range more {
		if i := slices.IndexFunc(out, func(b slog.Attr) bool { return b.Key == a.Key }); i >= 0 {
			out[i] = a
		} else {
			out = append(out, a)
		}
	}
	return out
}
