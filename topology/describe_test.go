package topology

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestDescribeGolden compares Describe's output for each spec in
// testdata/describe with its .golden file. Run with -update to rewrite
// them, then review the diff.
func TestDescribeGolden(t *testing.T) {
	for _, tc := range []struct {
		name       string
		partitions int32
	}{
		{"tumbling", 0},
		{"hopping", 12},
		{"session", 0},
		{"metrics", 6},
		{"rollups", 6}, // several rollups, a chain
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParseFile(t, filepath.Join("testdata", "describe", tc.name+".yaml"))
			got := Describe(s, tc.partitions)
			golden := filepath.Join("testdata", "describe", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Describe differs from %s (run go test -update and review the diff):\n%s", golden, got)
			}
		})
	}
}

func TestDescribeTumblingLateExample(t *testing.T) {
	s, err := Parse([]byte(specWith("window: {type: tumbling, size: 1m, grace: 30s}")))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(strings.Fields(Describe(s, 6)), " ") // undo the wrapping
	for _, want := range []string{
		"a record for 12:00:59 belongs to window [12:00:00, 12:01:00)",
		"that window closes when stream time reaches 12:01:30",
		`a record for 12:00:59 arriving after 12:01:30 stream time is late and goes to "demo-late"`,
		"An input partition with nothing to read for 10s (idle_timeout) is left out of the minimum",
		"holds windows back for up to 2m (max_wait)",
		"each task's stream time is the lowest watermark of all input partitions",
		"tasks: 6, one per source partition",
		"demo-repartition 6 delete CreateTime no time limit; eddy deletes what it has committed",
		"demo-windows-changelog 6 compact",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Describe does not say %q:\n%s", want, Describe(s, 6))
		}
	}
}

func TestDescribeWindowExamples(t *testing.T) {
	for _, tc := range []struct {
		window string
		want   []string
	}{
		{"{type: tumbling, size: 1h}", []string{
			"a record for 12:00:59 belongs to window [12:00:00, 13:00:00); that window closes when stream time reaches 13:00:00 (its end; no grace period)",
		}},
		{"{type: tumbling, size: 24h, grace: 1h}", []string{
			"belongs to window [00:00:00, 2025-06-03 00:00:00); that window closes when stream time reaches 2025-06-03 01:00:00",
		}},
		{"{type: tumbling, size: 7s}", []string{ // aligned to the epoch, not to the minute
			"belongs to window [12:00:57, 12:01:04)",
		}},
		{"{type: hopping, size: 1m, advance: 20s, grace: 10s}", []string{
			"every record belongs to 3 windows",
			"belongs to 3 windows: [12:00:00, 12:01:00), [12:00:20, 12:01:20) and [12:00:40, 12:01:40)",
			"The earliest closes when stream time reaches 12:01:10 and the latest when it reaches 12:01:50",
		}},
		{"{type: hopping, size: 1h, advance: 1m}", []string{
			"belongs to 60 windows: [11:01:00, 12:01:00), [11:02:00, 12:02:00), ... and [12:00:00, 13:00:00)",
		}},
		{"{type: hopping, size: 5m, advance: 2m}", []string{"every record belongs to 2 or 3 windows"}},
		{"{type: session, gap: 30m, grace: 5m}", []string{
			"records for one key at 12:00:59 and 12:15:59 (15m apart, within the 30m gap) form one session [12:00:59, 12:15:59]",
			"a record for that key after 12:45:59 (more than 30m after 12:15:59) starts a new session",
			"closes when stream time passes 12:50:59 (its last record plus the 30m gap plus the 5m grace)",
			"a record for 12:00:59 arriving after 12:50:59 stream time is late",
		}},
		{"{type: session, gap: 1s}", []string{"12:00:59 and 12:00:59.500 (500ms apart, within the 1s gap)"}},
	} {
		t.Run(tc.window, func(t *testing.T) {
			s, err := Parse([]byte(specWith("window: " + tc.window)))
			if err != nil {
				t.Fatal(err)
			}
			out := Describe(s, 0)
			got := strings.Join(strings.Fields(out), " ")
			for _, want := range tc.want {
				if !strings.Contains(got, want) {
					t.Errorf("Describe does not say %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestDescribeLinesAreShort(t *testing.T) {
	s := mustParseFile(t, filepath.Join("testdata", "describe", "hopping.yaml"))
	for _, l := range strings.Split(Describe(s, 3), "\n") {
		// The topics table is the one thing allowed to be wide.
		if len(l) > describeWidth && !strings.Contains(l, " delete ") && !strings.Contains(l, " compact ") && !strings.Contains(l, "PURPOSE") {
			t.Errorf("line longer than %d: %q", describeWidth, l)
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", time.Hour: "1h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		500 * time.Millisecond: "500ms", 0: "0s", 10 * time.Second: "10s", 2*time.Hour + 30*time.Second: "2h0m30s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestDescribeAlertValue: describe says which aggregate a threshold rule's
// alerts report as their value, and when that is the default (the first
// aggregate the condition names, which for a guard such as `n >= 20 && p99
// > 1000` is the count, not the latency the rule is about).
func TestDescribeAlertValue(t *testing.T) {
	aggs := "aggregates: [{name: n, op: count}, {name: p99, op: p99, field: latency_ms}]"
	for _, tc := range []struct{ rule, want string }{
		{"{name: slow, kind: threshold, condition: 'n >= 20 && p99 > 1000'}",
			"Its alerts report n as their value, the first aggregate the condition names; write `value: AGGREGATE` to report another."},
		{"{name: slow, kind: threshold, condition: 'n >= 20 && p99 > 1000', value: p99}",
			"Its alerts report p99 as their value (`value:`)."},
		{"{name: slow, kind: threshold, condition: 'endpoint == \"/x\"'}",
			"Its alerts carry no value: the condition names no aggregate."},
	} {
		s, err := Parse([]byte(specWith(aggs, "alerts: {rules: ["+tc.rule+"]}")))
		if err != nil {
			t.Fatalf("%s: %v", tc.rule, err)
		}
		got := strings.Join(strings.Fields(Describe(s, 0)), " ")
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: describe lacks %q:\n%s", tc.rule, tc.want, got)
		}
	}
}
