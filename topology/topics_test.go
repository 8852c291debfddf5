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
	got := s.InternalTopics(6)
	want := []TopicInfo{
		{Name: "demo-repartition", Partitions: 6, CleanupPolicy: "delete", Retention: RepartitionRetention},
		{Name: "demo-latency-changelog", Partitions: 6, CleanupPolicy: "compact"},
		{Name: "demo-late", Partitions: 6, CleanupPolicy: "delete"},
		{Name: "demo-dlq", Partitions: 6, CleanupPolicy: "delete"},
	}
	for i := range got {
		if got[i].Purpose == "" {
			t.Errorf("%s has no purpose", got[i].Name)
		}
		got[i].Purpose = ""
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("InternalTopics:\n got %+v\nwant %+v", got, want)
	}

	s, err = Parse([]byte(specWith("source: {topics: [in], keyed_by_group_key: true}", "late_topic: rejects", "dead_letter_topic: rejects")))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ti := range s.InternalTopics(0) {
		names = append(names, ti.Name)
	}
	if want := []string{"demo-windows-changelog", "rejects"}; !reflect.DeepEqual(names, want) {
		t.Errorf("InternalTopics = %q, want %q", names, want)
	}
}
