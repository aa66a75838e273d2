package probes

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTracker(t *testing.T) {
	// Results are written as t (success) and f (failure); states as
	// u (unknown), h (healthy) and f (failing), one per result.
	tests := []struct {
		name          string
		fail, recover int
		results       string
		wantStates    string
		wantSince     int // index of the first result of the run that made the last change; -1 for none
	}{
		{"recovers after two", 3, 2, "tt", "uh", 0},
		{"fails after three", 3, 2, "fff", "uuf", 0},
		{"flapping never decides", 3, 2, "tftftftftf", "uuuuuuuuuu", -1},
		{"flapping from healthy stays healthy", 3, 2, "tttftftftf", "uhhhhhhhhh", 0},
		{"one failure keeps healthy", 3, 2, "ttftt", "uhhhh", 0},
		{"fail then recover", 3, 2, "ttffftt", "uhhhffh", 5},
		{"one success keeps failing", 3, 2, "ffftfft", "uufffff", 0},
		{"interrupted failures restart the count", 3, 2, "ttfftfff", "uhhhhhhf", 5},
		{"thresholds of one", 1, 1, "tfft", "hffh", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			tr := NewTracker(tt.fail, tt.recover, t0)
			var got strings.Builder
			results := strings.ReplaceAll(tt.results, " ", "")
			for i, c := range results {
				end := t0.Add(time.Duration(i+1) * time.Second)
				tr.Observe(Result{OK: c == 't', Detail: string(c)}, end.Add(-300*time.Millisecond), end)
				got.WriteByte(tr.State().String()[0])
			}
			want := strings.ReplaceAll(tt.wantStates, " ", "")
			if diff := cmp.Diff(want, got.String()); diff != "" {
				t.Errorf("states (-want +got):\n%s", diff)
			}
			wantSince := t0
			if tt.wantSince >= 0 {
				// The run's first check started 300 ms before it ended.
				wantSince = t0.Add(time.Duration(tt.wantSince+1)*time.Second - 300*time.Millisecond)
			}
			if diff := cmp.Diff(wantSince, tr.Since()); diff != "" {
				t.Errorf("Since() (-want +got):\n%s", diff)
			}
			last, at := tr.Last()
			if diff := cmp.Diff(string(results[len(results)-1]), last.Detail); diff != "" {
				t.Errorf("Last() detail (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(t0.Add(time.Duration(len(results))*time.Second), at); diff != "" {
				t.Errorf("Last() time (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTrackerReportsChanges(t *testing.T) {
	tr := NewTracker(2, 1, time.Time{})
	var got []bool
	for _, ok := range []bool{true, true, false, false, false, true} {
		got = append(got, tr.Observe(Result{OK: ok}, time.Time{}, time.Time{}))
	}
	want := []bool{true, false, false, true, false, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Observe() changed (-want +got):\n%s", diff)
	}
}
