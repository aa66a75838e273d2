package cluster

import (
	"fmt"
	"os"
	"time"
)

// The watchdog covers what the lease cannot: a witness that is frozen
// (SIGSTOP, a paused VM) or wedged while its site is cut off demotes
// nothing, and the voters see its lease expire all the same. The lease
// loop feeds the device only while this witness's lease holds with more
// than the device's timeout left for every group active at its site, so
// that a witness that stops feeding it, for whatever reason, has its host
// reset before its lease runs out, and so before any quorum of voters may
// report its site's lease expired (config.WatchdogFit is the matching
// rule on fence_after).

// Watchdog is a device that resets the host unless it is written to
// within its timeout. Only the lease loop uses it.
type Watchdog interface {
	// Feed writes to the device, opening it on first use (the device
	// starts counting when opened).
	Feed() error
	// Disarm writes the magic 'V' and closes the device, which stops
	// drivers that honour it: for a clean stop only.
	Disarm() error
}

// deviceWatchdog is the Linux watchdog device at path (/dev/watchdog): a
// write of any byte but 'V' restarts its timer. Its timeout is the
// device's own; it is not set here.
type deviceWatchdog struct {
	path string
	f    *os.File
}

func (w *deviceWatchdog) Feed() error {
	if w.f == nil {
		f, err := os.OpenFile(w.path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open watchdog: %w", err)
		}
		w.f = f
	}
	if _, err := w.f.Write([]byte{'1'}); err != nil {
		return fmt.Errorf("feed watchdog: %w", err)
	}
	return nil
}

func (w *deviceWatchdog) Disarm() error {
	if w.f == nil {
		return nil
	}
	_, werr := w.f.Write([]byte{'V'})
	cerr := w.f.Close()
	w.f = nil
	if werr != nil {
		return fmt.Errorf("disarm watchdog: %w", werr)
	}
	return cerr
}

// watchdogFeeds reports whether the lease loop may feed the watchdog now.
// granted is whether this witness's lease was ever granted (the device is
// first opened then) and since how long ago the renewal behind it was
// sent; fenceAfter lists the fence_after of every group active at this
// site that the lease fences. With such groups the lease must hold with
// more than timeout left for the shortest of them, so that the device,
// unfed from now on, fires before that lease runs out; with none there is
// nothing at this site for a reset to stop.
func watchdogFeeds(granted bool, since, timeout time.Duration, fenceAfter []time.Duration) bool {
	if !granted {
		return false
	}
	for _, fa := range fenceAfter {
		if since+timeout >= fa {
			return false
		}
	}
	return true
}
