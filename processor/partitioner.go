package processor

import (
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partitioner sends records to the partition set on the record for the
// topics named (changelogs: partition = task), and by key hash (Kafka's
// murmur2, as the Java client) otherwise.
type partitioner struct {
	manual map[string]bool
	def    kgo.Partitioner
	wm     []string // the repartition topics, whose watermark records are partitioned by hand
}

func newPartitioner(manual ...string) partitioner {
	m := make(map[string]bool, len(manual))
	for _, t := range manual {
		m[strings.TrimSpace(t)] = true
	}
	return partitioner{manual: m, def: kgo.StickyKeyPartitioner(nil)}
}

// withWatermarks makes the watermark records of the repartition topics go
// to the partition set on them (watermarks.go); their other records go by
// key hash.
func (p partitioner) withWatermarks(repartition ...string) partitioner {
	p.wm = repartition
	return p
}

func (p partitioner) ForTopic(t string) kgo.TopicPartitioner {
	if p.manual[t] {
		return manualPartitioner{}
	}
	if slices.Contains(p.wm, t) {
		return watermarkPartitioner{p.def.ForTopic(t)}
	}
	return p.def.ForTopic(t)
}

// watermarkPartitioner sends watermark records to the partition set on
// them, other records as def does.
type watermarkPartitioner struct{ def kgo.TopicPartitioner }

func (w watermarkPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return isWatermark(r) || w.def.RequiresConsistency(r)
}

func (w watermarkPartitioner) Partition(r *kgo.Record, n int) int {
	if isWatermark(r) {
		return int(r.Partition)
	}
	return w.def.Partition(r, n)
}

type manualPartitioner struct{}

func (manualPartitioner) RequiresConsistency(*kgo.Record) bool { return true }
func (manualPartitioner) Partition(r *kgo.Record, _ int) int   { return int(r.Partition) }
