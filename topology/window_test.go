package topology

import (
	"reflect"
	"testing"
	"time"
)

func TestWindowStarts(t *testing.T) {
	const m = int64(time.Minute / time.Millisecond)
	for _, tc := range []struct {
		w    Window
		ts   int64
		want []int64
	}{
		{Window{Type: WindowTumbling, Size: time.Minute}, 0, []int64{0}},
		{Window{Type: WindowTumbling, Size: time.Minute}, m - 1, []int64{0}},
		{Window{Type: WindowTumbling, Size: time.Minute}, m, []int64{m}},
		{Window{Type: WindowTumbling, Size: time.Minute}, -1, []int64{-m}},
		{Window{Type: WindowHopping, Size: 3 * time.Minute, Advance: time.Minute}, 3*m + 5, []int64{m, 2 * m, 3 * m}},
		{Window{Type: WindowHopping, Size: 3 * time.Minute, Advance: time.Minute}, 3 * m, []int64{m, 2 * m, 3 * m}},
		{Window{Type: WindowHopping, Size: 5 * time.Minute, Advance: 2 * time.Minute}, 4 * m, []int64{0, 2 * m, 4 * m}},
		{Window{Type: WindowHopping, Size: 5 * time.Minute, Advance: 2 * time.Minute}, 5 * m, []int64{2 * m, 4 * m}},
		{Window{Type: WindowSession, Gap: time.Minute}, 5, nil},
	} {
		got := tc.w.Starts(tc.ts)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v.Starts(%d) = %v, want %v", tc.w, tc.ts, got, tc.want)
		}
		for _, st := range got {
			if st > tc.ts || tc.ts >= st+tc.w.SizeMillis() {
				t.Errorf("%+v: window [%d, %d) does not contain %d", tc.w, st, st+tc.w.SizeMillis(), tc.ts)
			}
		}
	}
}

func TestWindowMillis(t *testing.T) {
	tum := Window{Type: WindowTumbling, Size: time.Minute, Grace: time.Second}
	hop := Window{Type: WindowHopping, Size: time.Minute, Advance: 10 * time.Second}
	ses := Window{Type: WindowSession, Gap: 5 * time.Minute, Size: time.Hour}
	for _, tc := range []struct {
		name      string
		got, want int64
	}{
		{"tumbling size", tum.SizeMillis(), 60000},
		{"tumbling advance", tum.AdvanceMillis(), 60000},
		{"tumbling grace", tum.GraceMillis(), 1000},
		{"tumbling gap", tum.GapMillis(), 0},
		{"hopping advance", hop.AdvanceMillis(), 10000},
		{"session size", ses.SizeMillis(), 0},
		{"session advance", ses.AdvanceMillis(), 0},
		{"session gap", ses.GapMillis(), 300000},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if s := (&Spec{Window: tum}); s.WindowSizeMillis() != 60000 {
		t.Error("Spec.WindowSizeMillis")
	}
}

// The close rule: a time window closes at end+grace; a session, whose End
// is its last event time, once stream time passes end+gap+grace.
func TestWindowRuleCloseTime(t *testing.T) {
	tum := Window{Type: WindowTumbling, Size: time.Minute, Grace: time.Second}.Rule()
	if got := tum.CloseTime(0, 60_000); got != 61_000 {
		t.Errorf("tumbling [0,60s) grace 1s closes at %d, want 61000", got)
	}
	ses := Window{Type: WindowSession, Gap: 5 * time.Minute, Grace: time.Second}.Rule()
	if got := ses.CloseTime(0, 10_000); got != 10_000+300_000+1_000+1 {
		t.Errorf("session [0,10s] gap 5m grace 1s closes at %d, want %d", got, 10_000+300_000+1_000+1)
	}
	if got := ses.ClosedSessionRetention(10_000); got != 10_000+600_000+1_000+1 {
		t.Errorf("closed session retention %d", got)
	}
	if got := FloorDiv(-1, 10); got != -1 {
		t.Errorf("FloorDiv(-1, 10) = %d, want -1", got)
	}
}
