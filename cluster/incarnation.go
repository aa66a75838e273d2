package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// incarnationFile, in data_dir, holds the incarnation of this witness's
// latest run.
const incarnationFile = "incarnation"

// nextIncarnation numbers a new run of the witness whose data_dir is dir
// and records it there. It is larger than the incarnation recorded by any
// earlier run, and never below now in Unix nanoseconds, so that it also
// grows across a lost data_dir as long as the clock does.
func nextIncarnation(dir string, now time.Time) (uint64, error) {
	path := filepath.Join(dir, incarnationFile)
	var last uint64
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("read %s: %w", incarnationFile, err)
	default:
		if last, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return 0, fmt.Errorf("read %s: %w", incarnationFile, err)
		}
	}
	next := max(last+1, uint64(max(now.UnixNano(), 0)))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(next, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("write %s: %w", incarnationFile, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("write %s: %w", incarnationFile, err)
	}
	return next, nil
}
