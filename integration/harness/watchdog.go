package harness

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// StandInWatchdog plays a site's hardware watchdog without touching the
// machine's own: never load softdog or open /dev/watchdog here, it would
// reset the machine. The witness's watchdog device is a plain file, which
// the witness writes a byte to at each feed; the stand-in polls its size.
// Once it has been fed, when it goes unfed for its timeout it does what a
// host reset does to the site's database: SIGKILL the postmaster. It fires
// once. The magic 'V', written at a clean stop, disarms it until the next
// feed.
type StandInWatchdog struct {
	Path    string
	Timeout time.Duration
	site    string
	reset   func() error

	mu            sync.Mutex
	fired, killed time.Time
	resetErr      error
	fedAt         time.Time // last feed seen; zero before the first
	disarmed      bool

	stop chan struct{}
	done chan struct{}
}

// pollEvery is how often the stand-in looks at the device file; the
// firing time is exact to about this much.
const pollEvery = 20 * time.Millisecond

func newStandInWatchdog(path, site string, timeout time.Duration, reset func() error) (*StandInWatchdog, error) {
	// Writable by the witness whatever user it runs as.
	if err := os.WriteFile(path, nil, 0o666); err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		return nil, err
	}
	w := &StandInWatchdog{Path: path, Timeout: timeout, site: site, reset: reset, stop: make(chan struct{}), done: make(chan struct{})}
	go w.watch()
	return w, nil
}

func (w *StandInWatchdog) watch() {
	defer close(w.done)
	var size int64
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		st, err := os.Stat(w.Path)
		if err != nil {
			continue
		}
		if st.Size() != size {
			size = st.Size()
			last := lastByte(w.Path, size)
			w.mu.Lock()
			w.fedAt, w.disarmed = now, last == 'V'
			w.mu.Unlock()
			continue
		}
		w.mu.Lock()
		due := !w.fedAt.IsZero() && !w.disarmed && now.Sub(w.fedAt) >= w.Timeout
		if due {
			w.fired = now
		}
		w.mu.Unlock()
		if due {
			err := w.reset()
			w.mu.Lock()
			w.killed, w.resetErr = time.Now(), err
			w.mu.Unlock()
			return
		}
	}
}

func lastByte(path string, size int64) byte {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, size-1); err != nil && err != io.EOF {
		return 0
	}
	return b[0]
}

// Fired returns when the stand-in found the device unfed for its timeout
// and when the site's database was dead after it, if it fired.
func (w *StandInWatchdog) Fired() (fired, reset time.Time, ok bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired, w.killed, !w.fired.IsZero(), w.resetErr
}

// LastFeed is when the stand-in last saw the device written to.
func (w *StandInWatchdog) LastFeed() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fedAt
}

func (w *StandInWatchdog) String() string {
	return fmt.Sprintf("stand-in watchdog of %s (%s, timeout %s)", w.site, w.Path, w.Timeout)
}

func (w *StandInWatchdog) close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return nil
}
