package clock

import (
	"context"
	"time"
)

// WithTimeout is context.WithTimeout on c: the context ends, with
// context.DeadlineExceeded, once c has moved d on. On Real (or nil) it is
// context.WithTimeout. On any other clock the context reports no
// Deadline: a deadline in c's time would mislead the I/O deadlines that
// code below sets from it on the time package's clock.
func WithTimeout(ctx context.Context, c Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if c == nil || c == Real {
		return context.WithTimeout(ctx, d)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	if d <= 0 {
		cancel(context.DeadlineExceeded)
		return timeoutCtx{cctx}, func() { cancel(context.Canceled) }
	}
	t := c.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return timeoutCtx{cctx}, func() { t.Stop(); cancel(context.Canceled) }
}

// timeoutCtx reports an end by its clock's timer as DeadlineExceeded.
type timeoutCtx struct{ context.Context }

func (c timeoutCtx) Err() error {
	err := c.Context.Err()
	if err != nil && context.Cause(c.Context) == context.DeadlineExceeded {
		return context.DeadlineExceeded
	}
	return err
}
