package cluster

import (
	"testing"
	"time"
)

func TestNextDecision(t *testing.T) {
	began := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		now, wake time.Time
		want      time.Duration
	}{
		{"no wake: a tick after the evaluation began", began.Add(10 * time.Millisecond), time.Time{}, 240 * time.Millisecond},
		{"wake before the tick", began.Add(10 * time.Millisecond), began.Add(100 * time.Millisecond), 91 * time.Millisecond},
		{"wake after the tick", began.Add(10 * time.Millisecond), began.Add(time.Second), 240 * time.Millisecond},
		{"slow evaluation: at once, never negative", began.Add(time.Second), time.Time{}, time.Millisecond},
		{"wake already passed", began.Add(50 * time.Millisecond), began.Add(20 * time.Millisecond), time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextDecision(began, tt.now, tt.wake); got != tt.want {
				t.Errorf("nextDecision = %v, want %v", got, tt.want)
			}
		})
	}
}
