package processor

import (
	"encoding/json"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Read-only views of a running App for the web console (processor/console).
// Nothing here changes the App; each holds a.mu only while it copies.

// OpenWindows returns the current aggregates of the windows of key (the
// grouping key as eddy writes it: a JSON array of the key fields' values,
// e.g. ["checkout","/pay"]) that are open in this worker's tasks, oldest
// first, each as JSON in the output's result shape (key fields,
// window_start, window_end, aggregates), of the pipeline's first rollup
// (OpenWindowsIn names another). Windows live only in the task that owns
// the key's partition, so a worker that does not own it returns none. It
// holds the processing lock while it scans this worker's open windows: a
// query costs the pipeline about one scan of them.
func (a *App) OpenWindows(key string) ([]json.RawMessage, error) {
	return a.OpenWindowsIn("", key)
}

// OpenWindowsIn is OpenWindows of the rollup named rollup ("" the first).
// An unknown rollup is an error.
func (a *App) OpenWindowsIn(rollup, key string) ([]json.RawMessage, error) {
	r, err := rollupNamed(a.rollups, a.cfg.Spec.App, rollup)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []json.RawMessage
	for k, ts := range a.tasks {
		if k.stage != r.stage.idx {
			continue
		}
		t := ts[r.slot]
		rs, err := t.OpenWindowsOf(key)
		if err != nil {
			return nil, err
		}
		for _, res := range rs {
			b, err := r.p.encodeResultMap(res)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// AdvertiseSuffix is what a worker appends to its client id to make its
// console's base URL known to its peers: "@" and the URL, or nothing.
// The client id is free text that the group coordinator only reports (in
// DescribeGroups); it plays no part in the group protocol or the
// cooperative-sticky assignment. ParseAdvertised reads it back.
func AdvertiseSuffix(url string) string {
	if url == "" {
		return ""
	}
	return "@" + url
}

// ParseAdvertised returns the console base URL a member's client id
// carries (AdvertiseSuffix), or "".
func ParseAdvertised(clientID string) string {
	i := strings.LastIndex(clientID, "@")
	if i < 0 || !strings.Contains(clientID[i:], "://") {
		return ""
	}
	return clientID[i+1:]
}

// KeyPartition is the partition of the aggregation input (the repartition
// topic, or the source topic under keyed_by_group_key) that holds key (the
// grouping key as eddy writes it) among n partitions: the partitioner the
// App writes the repartition topic with (newPartitioner: franz-go's
// StickyKeyPartitioner, Kafka's murmur2 on the key bytes, as producers using
// Kafka's default partitioner do for the source topic). The task of that
// partition holds the key's windows.
func KeyPartition(topic, key string, n int) int32 {
	return int32(newPartitioner().ForTopic(topic).Partition(&kgo.Record{Topic: topic, Key: []byte(key)}, n))
}
