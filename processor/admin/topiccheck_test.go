package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/topology"
)

// TestCheckTopic: existing topics' settings that would delete what eddy
// writes or needs are found, each with its fix; eddy's own settings are
// not problems.
func TestCheckTopic(t *testing.T) {
	spec := &topology.Spec{App: "a", Store: "w", Source: topology.Source{Topics: []string{"in"}},
		Output: topology.Output{Topic: "out"}, LateTopic: "a-late", DeadLetterTopic: "a-dlq"}
	infos := map[string]topology.TopicInfo{}
	for _, ti := range spec.Topics(3) {
		infos[ti.Name] = ti
		if ps := checkTopic(ti, ti.Configs); len(ps) != 0 {
			t.Errorf("%s with eddy's own settings %v: problems %+v", ti.Name, ti.Configs, ps)
		}
	}
	week := "604800000"
	for _, c := range []struct {
		topic string
		cfg   map[string]string
		want  []string // fixes
		reset bool
		ret   time.Duration
	}{
		{"a-repartition", map[string]string{"cleanup.policy": "delete", "retention.ms": week, "message.timestamp.type": "CreateTime"},
			[]string{"retention.ms=-1"}, true, 7 * 24 * time.Hour},
		{"a-repartition", map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "message.timestamp.type": "LogAppendTime"},
			[]string{"message.timestamp.type=CreateTime"}, true, 0},
		{"a-w-changelog", map[string]string{"cleanup.policy": "compact,delete", "retention.ms": week},
			[]string{"cleanup.policy=compact"}, true, 0},
		{"out", map[string]string{"cleanup.policy": "delete", "retention.ms": week, "message.timestamp.type": "CreateTime"},
			[]string{"message.timestamp.type=LogAppendTime"}, false, 7 * 24 * time.Hour},
		{"out", map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "message.timestamp.type": "CreateTime"}, nil, false, 0},
		{"a-late", map[string]string{"cleanup.policy": "delete", "retention.ms": week, "message.timestamp.type": "LogAppendTime"}, nil, false, 0},
		{"a-dlq", map[string]string{"cleanup.policy": "compact", "retention.ms": week, "message.timestamp.type": "CreateTime"}, nil, false, 0},
	} {
		ps := checkTopic(infos[c.topic], c.cfg)
		var fixes []string
		for _, p := range ps {
			fixes = append(fixes, p.Fix...)
			if p.Reset != c.reset || p.Topic != c.topic || p.Effect == "" {
				t.Errorf("%s %v: problem %+v", c.topic, c.cfg, p)
			}
			if p.TimeRetention && p.Retention != c.ret {
				t.Errorf("%s %v: retention %v, want %v", c.topic, c.cfg, p.Retention, c.ret)
			}
			if cmd := p.FixCommand("b:9092"); !strings.Contains(cmd, "--bootstrap-server b:9092 --alter --entity-type topics --entity-name "+c.topic+" --add-config ") {
				t.Errorf("fix command %q", cmd)
			}
		}
		if strings.Join(fixes, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s %v: fixes %q, want %q", c.topic, c.cfg, fixes, c.want)
		}
	}
}
