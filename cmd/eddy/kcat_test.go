package main

// Interoperability with a third-party client built on librdkafka: kcat
// produces eddy's input and reads its output on the real broker, as JSON.
// Debian's kcat (1.7.1) is built without Avro support (`-s value=avro`
// answers "This build of kcat lacks Avro/Schema-Registry support"), so
// eddy's Avro results are read by another third-party consumer instead:
// Confluent's Python client with its AvroDeserializer
// (scripts/avro_consume.py, in TestKafkaSchemaRegistries).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// kcat runs kcat with args and returns its stdout; it fails the test on a
// non-zero exit.
func kcat(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcatPath(t), args...)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func kcatPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (Debian package kcat; scripts/test.sh installs it): %v", err)
	}
	return p
}

// TestKafkaKcatInterop: kcat produces the input (the known scenario, with
// bad records carrying a header), eddy processes it, and kcat reads the
// output topic with read_committed. What kcat reads must be what the Go
// client reads, record for record, and the final windows must be right.
func TestKafkaKcatInterop(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	kcatPath(t)
	for _, processing := range []string{"at_least_once", "exactly_once"} {
		t.Run(processing, func(t *testing.T) {
			t.Parallel()
			testKcatInterop(t, brokers, processing)
		})
	}
}

func testKcatInterop(t *testing.T, brokers []string, processing string) {
	b := strings.Join(brokers, ",")
	e := newE2EWith(t, brokers, processing, newScenario(21, 3, 120, 6))

	// kcat -P, one run per partition (order within a partition is the
	// scenario's), reading one record value per line of a file.
	dir := t.TempDir()
	want := map[int32]int64{}
	byPart := map[int32][]string{}
	for _, r := range e.sc.records(e.in) {
		byPart[r.Partition] = append(byPart[r.Partition], string(r.Value))
	}
	produce := func(p int32, name string, lines []string, extra ...string) {
		f := filepath.Join(dir, fmt.Sprintf("%s-%d.jsonl", name, p))
		if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if strings.Contains(l, "\n") {
				t.Fatalf("record value with a newline: %q", l)
			}
		}
		args := append([]string{"-P", "-q", "-b", b, "-t", e.in, "-p", strconv.Itoa(int(p)), "-l"}, extra...)
		kcat(t, append(args, f)...)
		want[p] += int64(len(lines))
	}
	for p := int32(0); p < e.sc.parts; p++ {
		produce(p, "events", byPart[p])
	}
	badByPart := map[int32][]string{}
	for _, r := range e.sc.badRecords(e.in) {
		badByPart[r.Partition] = append(badByPart[r.Partition], string(r.Value))
	}
	for p, lines := range badByPart {
		produce(p, "bad", lines, "-H", "trace=t-1")
	}
	// Everything kcat sent is there.
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ends, err := adm.ListEndOffsets(ctx, e.in)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != want[o.Partition] {
			t.Errorf("input partition %d: end offset %d after kcat produced %d records", o.Partition, o.Offset, want[o.Partition])
		}
	})
	// The records are byte for byte the scenario's.
	viaGo := kafkatest.ReadAll(t, brokers, e.in, false)
	if len(viaGo) != len(e.sc.events)+len(e.sc.bad) {
		t.Fatalf("input topic holds %d records, want %d", len(viaGo), len(e.sc.events)+len(e.sc.bad))
	}

	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	got, late := e.finalResults(t, w)
	e.sc.verify(t, got, late)
	checkDeadLetters(t, brokers, e)

	// kcat -C of the output topic, read_committed, against the Go client.
	out := kcat(t, "-C", "-q", "-b", b, "-t", e.out, "-o", "beginning", "-e",
		"-X", "isolation.level=read_committed", "-f", "%p\t%o\t%k\t%s\n")
	type rec struct {
		part      int32
		off       int64
		key, val  string
		formatted string
	}
	var fromKcat []rec
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 4)
		if len(f) != 4 {
			t.Fatalf("kcat output line %q: want partition, offset, key and value", sc.Text())
		}
		p, err1 := strconv.Atoi(f[0])
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("kcat output line %q: bad partition or offset", sc.Text())
		}
		fromKcat = append(fromKcat, rec{part: int32(p), off: o, key: f[2], val: f[3], formatted: sc.Text()})
	}
	var fromGo []rec
	for _, r := range kafkatest.ReadAll(t, brokers, e.out, true) {
		fromGo = append(fromGo, rec{part: r.Partition, off: r.Offset, key: string(r.Key), val: string(r.Value)})
	}
	order := func(rs []rec) {
		sort.Slice(rs, func(i, j int) bool {
			if rs[i].part != rs[j].part {
				return rs[i].part < rs[j].part
			}
			return rs[i].off < rs[j].off
		})
	}
	order(fromKcat)
	order(fromGo)
	if len(fromKcat) != len(fromGo) {
		t.Errorf("kcat read %d output records, the Go client %d", len(fromKcat), len(fromGo))
	}
	for i := 0; i < min(len(fromKcat), len(fromGo)); i++ {
		k, g := fromKcat[i], fromGo[i]
		if k.part != g.part || k.off != g.off || k.key != g.key || k.val != g.val {
			t.Errorf("output record %d differs:\n  kcat: %d@%d key %q value %s\n  Go:   %d@%d key %q value %s",
				i, k.part, k.off, k.key, k.val, g.part, g.off, g.key, g.val)
		}
	}
	// The results as kcat sees them are the right final windows.
	var recs []*kgo.Record
	for _, r := range fromKcat {
		recs = append(recs, &kgo.Record{Topic: e.out, Partition: r.part, Offset: r.off, Key: []byte(r.key), Value: []byte(r.val)})
	}
	e.sc.verify(t, parseResults(t, recs), late)
	if len(fromKcat) == 0 {
		t.Fatal("kcat read no output record")
	}
	t.Logf("kcat produced %d records; eddy wrote %d results; kcat and the Go client read the same", len(viaGo), len(fromKcat))

	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: eddy exited with %v", err)
	}
}
