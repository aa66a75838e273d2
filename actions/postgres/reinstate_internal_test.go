package postgres

import "testing"

func TestSwitchPoint(t *testing.T) {
	history := "1\t0/303C7E8\tno recovery target specified\n\n2\t1/A0000028\tno recovery target specified\n"
	for _, tt := range []struct {
		tli    int32
		at     uint64
		inFile bool
	}{
		{1, 0x303C7E8, true},
		{2, 0x1_A0000028, true},
		{3, 0, false},
	} {
		at, ok, err := switchPoint(history, tt.tli)
		if err != nil || ok != tt.inFile || at != tt.at {
			t.Errorf("timeline %d: %X %v %v, want %X %v", tt.tli, at, ok, err, tt.at, tt.inFile)
		}
	}
	if _, _, err := switchPoint("x\t0/1\treason\n", 1); err == nil {
		t.Error("a line that is not a timeline was read")
	}
}
