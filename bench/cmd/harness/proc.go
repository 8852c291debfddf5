package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// proc is one system under test: a child process pinned to the benchmark
// CPUs with taskset (taskset execs the program, so the pid is the program's).
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	waitErr error

	mu    sync.Mutex
	lines []string // stdout lines matching a watched prefix
	hwmKB int64    // highest VmHWM seen
}

func startProc(env *env, name string, argv []string, watch string, extraEnv ...string) (*proc, error) {
	full := append([]string{"-c", env.cpus}, argv...)
	cmd := exec.Command("taskset", full...)
	if len(extraEnv) > 0 {
		cmd.Env = append(os.Environ(), extraEnv...)
	}
	logf, err := os.Create(filepath.Join(env.logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	env.track(p)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if watch != "" && strings.HasPrefix(line, watch) {
				p.mu.Lock()
				p.lines = append(p.lines, line)
				p.mu.Unlock()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.waitErr = cmd.Wait()
		logf.Close()
		env.untrack(p)
		close(p.done)
	}()
	go func() { // peak RSS: VmHWM, sampled until exit (read just before exit would be too late)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			p.sampleHWM()
			select {
			case <-p.done:
				return
			case <-t.C:
			}
		}
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// watched returns the stdout lines seen so far with the watched prefix.
func (p *proc) watched() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

func (p *proc) sampleHWM() {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				p.mu.Lock()
				p.hwmKB = max(p.hwmKB, kb)
				p.mu.Unlock()
			}
		}
	}
}

func (p *proc) peakRSSMiB() float64 {
	p.sampleHWM()
	p.mu.Lock()
	defer p.mu.Unlock()
	kb := p.hwmKB
	if p.exited() && p.cmd.ProcessState != nil {
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			kb = max(kb, ru.Maxrss) // ru_maxrss is in KiB on Linux
		}
	}
	return float64(kb) / 1024
}

// cpuSeconds is user+system CPU of the process (all its threads) so far,
// from /proc/<pid>/stat; after exit, from the rusage of the child.
func (p *proc) cpuSeconds() float64 {
	if p.exited() && p.cmd.ProcessState != nil {
		return p.cmd.ProcessState.UserTime().Seconds() + p.cmd.ProcessState.SystemTime().Seconds()
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go runs on.
const clockTicks = 100

// stop sends SIGTERM (a clean shutdown for both systems) and SIGKILL after
// 30 s. It waits for the exit.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// groupProgress is what a consumer group has committed.
type groupProgress struct {
	committed map[string]int64 // by topic
	lag       int64            // over every topic the group has offsets for
}

func progress(ctx context.Context, adm *kadm.Client, group, input string) (groupProgress, error) {
	gp := groupProgress{committed: map[string]int64{}}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return gp, err
	}
	topics := map[string]bool{input: true}
	offs.Each(func(o kadm.OffsetResponse) { topics[o.Topic] = true })
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return gp, err
	}
	ends.Each(func(e kadm.ListedOffset) {
		c := int64(0)
		if o, ok := offs.Lookup(e.Topic, e.Partition); ok && o.At >= 0 {
			c = o.At
		}
		gp.committed[e.Topic] += c
		gp.lag += max(0, e.Offset-c)
	})
	return gp, nil
}

// throughput is one measured run of a system over a pre-loaded topic.
type throughput struct {
	Records    int64   // records counted in the rate (after the first commit)
	Seconds    float64 // from the first commit seen to the last
	Rate       float64 // records/s
	CPUPerM    float64 // CPU-seconds per million records
	PeakRSSMiB float64
	StartupSec float64 // process start to first commit
	// The second half of the run (from the first commit that covers half
	// of the records to the end): the steady state, without start-up,
	// JIT warm-up or the first commits.
	SteadyRate    float64 // records/s
	SteadyCPUPerM float64
}

// measure waits until group has committed all of want records of input and
// has no lag left. The rate counts the work done between the first commit
// seen and then, so that neither JVM nor Go start-up counts. The work is
// measured on the last stage's input, stage: the source topic, or the
// repartition topic of a pipeline that has one (whose source offsets are
// committed long before the records are aggregated); it is expressed in
// source records.
func measure(ctx context.Context, env *env, p *proc, group, input, stage string, want int64, timeout time.Duration) (throughput, error) {
	var r throughput
	deadline := time.Now().Add(timeout)
	var (
		t1   time.Time
		c1   int64
		cpu1 float64
		// every poll after the first commit, for the steady state
		seen []struct {
			t   time.Time
			c   int64
			cpu float64
		}
	)
	for {
		if p.exited() {
			return r, fmt.Errorf("%s exited early (%v); see %s", p.name, p.waitErr, filepath.Join(env.logDir, p.name+".log"))
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%s: not done after %s", p.name, timeout)
		}
		gp, err := progress(ctx, env.adm, group, input)
		now := time.Now()
		cpu := p.cpuSeconds()
		if err == nil {
			if t1.IsZero() && gp.committed[stage] > 0 {
				t1, c1, cpu1 = now, gp.committed[stage], cpu
				r.StartupSec = now.Sub(p.started).Seconds()
			}
			if !t1.IsZero() && (len(seen) == 0 || seen[len(seen)-1].c != gp.committed[stage]) {
				seen = append(seen, struct {
					t   time.Time
					c   int64
					cpu float64
				}{now, gp.committed[stage], cpu})
			}
			if gp.committed[input] >= want && gp.lag == 0 && !t1.IsZero() {
				total := gp.committed[stage]
				r.Records = want * (total - c1) / max(total, 1)
				r.Seconds = now.Sub(t1).Seconds()
				if r.Records <= 0 || r.Seconds <= 0 {
					return r, fmt.Errorf("%s: all records were committed at the first commit seen: raise EDDY_BENCH_RECORDS", p.name)
				}
				r.Rate = float64(r.Records) / r.Seconds
				r.CPUPerM = (cpu - cpu1) / float64(r.Records) * 1e6
				for _, x := range seen {
					if 2*x.c >= total && x.c < total && now.After(x.t) {
						recs := float64(want) * float64(total-x.c) / float64(max(total, 1))
						r.SteadyRate = recs / now.Sub(x.t).Seconds()
						r.SteadyCPUPerM = (cpu - x.cpu) / recs * 1e6
						break
					}
				}
				r.PeakRSSMiB = p.peakRSSMiB()
				return r, nil
			}
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
