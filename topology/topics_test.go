package topology

import (
	"reflect"
	"testing"
)

func TestTopicNames(t *testing.T) {
	s, err := Parse([]byte(specWith("store: latency")))
	if err != nil {
		t.Fatal(err)
	}
	if s.GroupID() != "demo" || s.ChangelogTopic() != "demo-latency-changelog" || s.RepartitionTopic() != "demo-repartition" ||
		!s.NeedsRepartition() {
		t.Errorf("names: %q %q %q %v", s.GroupID(), s.ChangelogTopic(), s.RepartitionTopic(), s.NeedsRepartition())
	}
	type row struct {
		Name, Cleanup, TS string
		Roles             []string
		Internal, Purged  bool
		Retention         string
	}
	var got []row
	for _, ti := range s.Topics(6) {
		if ti.Purpose == "" {
			t.Errorf("%s has no purpose", ti.Name)
		}
		if ti.Partitions != 6 {
			t.Errorf("%s: %d partitions, want 6", ti.Name, ti.Partitions)
		}
		if ti.Configs["cleanup.policy"] != ti.CleanupPolicy {
			t.Errorf("%s: configs %v disagree with cleanup policy %s", ti.Name, ti.Configs, ti.CleanupPolicy)
		}
		if ti.TimestampType != "" && ti.Configs["message.timestamp.type"] != ti.TimestampType {
			t.Errorf("%s: configs %v disagree with timestamp type %s", ti.Name, ti.Configs, ti.TimestampType)
		}
		got = append(got, row{ti.Name, ti.CleanupPolicy, ti.TimestampType, ti.Roles, ti.Internal, ti.PurgedByEddy, ti.Configs["retention.ms"]})
	}
	want := []row{
		// Event time travels as the repartition record's timestamp, so
		// CreateTime, and no time retention: eddy purges it.
		{"demo-repartition", "delete", "CreateTime", []string{"repartition"}, true, true, "-1"},
		{"demo-latency-changelog", "compact", "", []string{"changelog"}, true, false, ""},
		// What others read is stamped at write time: a replay of old data
		// lives as long as live results.
		{"out", "delete", "LogAppendTime", []string{"output"}, false, false, ""},
		{"demo-late", "delete", "LogAppendTime", []string{"late"}, false, false, ""},
		{"demo-dlq", "delete", "LogAppendTime", []string{"dead-letter"}, false, false, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Topics:\n got %+v\nwant %+v", got, want)
	}
	var internal []string
	for _, ti := range s.InternalTopics(6) {
		internal = append(internal, ti.Name)
	}
	if want := []string{"demo-repartition", "demo-latency-changelog"}; !reflect.DeepEqual(internal, want) {
		t.Errorf("InternalTopics = %q, want %q", internal, want)
	}

	s, err = Parse([]byte(specWith("source: {topics: [in], keyed_by_group_key: true}", "late_topic: rejects", "dead_letter_topic: rejects")))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ti := range s.Topics(0) {
		names = append(names, ti.Name)
		if ti.Name == "rejects" && !reflect.DeepEqual(ti.Roles, []string{"late", "dead-letter"}) {
			t.Errorf("rejects has roles %q, want late and dead-letter", ti.Roles)
		}
	}
	if want := []string{"demo-windows-changelog", "out", "rejects"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Topics = %q, want %q", names, want)
	}
}
