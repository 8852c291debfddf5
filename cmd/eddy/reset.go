package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/admin"
)

func resetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reset -f pipeline.yaml (--to-earliest | --to-datetime T | --by-duration D | --to-offsets t:p=o,...)",
		Short: "Reset a stopped pipeline so its next run reprocesses its input from a point",
		Long: `Reset a pipeline so that its next ` + "`eddy run`" + ` reprocesses the input from
an earlier point and rebuilds every result from there:

  - the input offsets committed by the consumer group move to the target;
  - the changelog and repartition topics are deleted and recreated empty
    (same partitions, replication and configs): state and stream time start
    from scratch, and every worker's local state is rebuilt on its next start;
  - output, late and dead-letter topics are not touched: downstream consumers
    see the replayed final results again. Settings of theirs that would
    delete replayed results (CreateTime with a retention shorter than the
    age of the data) are printed with the command that fixes them; settings
    of the internal topics that would lose records (time retention on the
    repartition topic) are replaced by eddy's when they are recreated.

Every worker of the pipeline must be stopped: eddy reset refuses, naming the
live members, while the group has any. --dry-run prints the plan (per input
partition: committed offset, new offset, records to reprocess) and changes
nothing. If a step fails, eddy reset says which steps were done; running the
same command again finishes the reset. See docs/reprocessing.md.`,
		Args: cobra.NoArgs,
		RunE: runReset,
	}
	addSettings(cmd, "file")
	addSettings(cmd, brokerSettings...)
	f := cmd.Flags()
	f.Bool("to-earliest", false, "Reprocess everything still in the input topics")
	f.String("to-datetime", "", "Reprocess from the first record whose Kafka timestamp is at or after this time (RFC 3339, e.g. 2026-11-20T00:00:00Z)")
	f.Duration("by-duration", 0, "Reprocess the records of the last D (e.g. 6h): like --to-datetime now-D")
	f.String("to-offsets", "", "Reprocess from these offsets: topic:partition=offset,... (partitions not listed keep their committed offset)")
	f.Bool("dry-run", false, "Print what would change and change nothing")
	return cmd
}

func runReset(cmd *cobra.Command, _ []string) error {
	spec, err := loadSpec(flagString(cmd, "file"))
	if err != nil {
		return err
	}
	target, err := resetTarget(cmd, time.Now())
	if err != nil {
		return err
	}
	opts, err := brokerOpts(cmd)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitBrokers(flagString(cmd, "brokers"))...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := cmd.Context()
	out := cmd.OutOrStdout()

	plan, err := admin.PlanReset(ctx, adm, spec, target)
	if err != nil {
		return err
	}
	plan.Brokers = flagString(cmd, "brokers")
	plan.Print(out)
	if dry, _ := cmd.Flags().GetBool("dry-run"); dry {
		fmt.Fprintln(out, "\nDry run: nothing was changed.")
		return nil
	}
	fmt.Fprintln(out)
	err = admin.ExecuteReset(ctx, adm, plan, func(s admin.ResetStep) {
		fmt.Fprintf(out, "done: %s\n", s)
	})
	if err != nil {
		var re *admin.ResetError
		if errors.As(err, &re) && len(re.Done) > 0 {
			return fmt.Errorf("%w\n  %s", err, finishCommand(cmd, target))
		}
		var ga *admin.GroupActiveError
		if errors.As(err, &ga) {
			return ga
		}
		return err
	}
	fmt.Fprintf(out, "\nReset of %q complete. Start the workers (eddy run) to reprocess.\n", spec.App)
	return nil
}

// resetTarget reads the one target flag set. --by-duration becomes a time
// here, once, so the plan and the command printed to finish a failed reset
// name the same instant.
func resetTarget(cmd *cobra.Command, now time.Time) (admin.ResetTarget, error) {
	f := cmd.Flags()
	var set []string
	for _, n := range []string{"to-earliest", "to-datetime", "by-duration", "to-offsets"} {
		if f.Changed(n) {
			set = append(set, "--"+n)
		}
	}
	if len(set) != 1 {
		return admin.ResetTarget{}, fmt.Errorf("say where to reset to with exactly one of --to-earliest, --to-datetime, --by-duration or --to-offsets (got %d: %s)",
			len(set), strings.Join(set, " "))
	}
	switch set[0] {
	case "--to-earliest":
		if v, _ := f.GetBool("to-earliest"); !v {
			return admin.ResetTarget{}, errors.New("--to-earliest=false: say where to reset to")
		}
		return admin.ResetTarget{Earliest: true}, nil
	case "--to-datetime":
		s, _ := f.GetString("to-datetime")
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return admin.ResetTarget{}, fmt.Errorf("--to-datetime %q: want RFC 3339 with a zone, e.g. 2026-11-20T00:00:00Z", s)
		}
		return admin.ResetTarget{Time: t}, nil
	case "--by-duration":
		d, _ := f.GetDuration("by-duration")
		if d <= 0 {
			return admin.ResetTarget{}, fmt.Errorf("--by-duration %s: must be positive, e.g. 6h", d)
		}
		return admin.ResetTarget{Time: now.Add(-d).Truncate(time.Millisecond)}, nil
	default:
		s, _ := f.GetString("to-offsets")
		offs, err := parseOffsets(s)
		if err != nil {
			return admin.ResetTarget{}, err
		}
		return admin.ResetTarget{Offsets: offs}, nil
	}
}

// parseOffsets parses "topic:partition=offset,..." (topic names may
// contain ':' only before the last one).
func parseOffsets(s string) (map[string]map[int32]int64, error) {
	out := map[string]map[int32]int64{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		tp, off, ok := strings.Cut(item, "=")
		i := strings.LastIndexByte(tp, ':')
		if !ok || i <= 0 {
			return nil, fmt.Errorf("--to-offsets %q: want topic:partition=offset", item)
		}
		p, err1 := strconv.ParseInt(tp[i+1:], 10, 32)
		o, err2 := strconv.ParseInt(off, 10, 64)
		if err1 != nil || err2 != nil || p < 0 || o < 0 {
			return nil, fmt.Errorf("--to-offsets %q: partition and offset must be non-negative integers", item)
		}
		t := tp[:i]
		if out[t] == nil {
			out[t] = map[int32]int64{}
		}
		if _, dup := out[t][int32(p)]; dup {
			return nil, fmt.Errorf("--to-offsets: %s:%d is given twice", t, p)
		}
		out[t][int32(p)] = o
	}
	if len(out) == 0 {
		return nil, errors.New("--to-offsets: no offsets given (want topic:partition=offset,…)")
	}
	return out, nil
}

// finishCommand is the command that finishes an interrupted reset: the
// same one, with --by-duration pinned to the instant it meant.
func finishCommand(cmd *cobra.Command, target admin.ResetTarget) string {
	args := []string{"eddy", "reset"}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "dry-run":
			return
		case "by-duration":
			args = append(args, "--to-datetime", target.Time.UTC().Format(time.RFC3339Nano))
			return
		}
		if f.Value.Type() == "bool" {
			args = append(args, "--"+f.Name)
			return
		}
		args = append(args, "--"+f.Name, shellQuote(f.Value.String()))
	})
	return "to finish: " + strings.Join(args, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ':' || r == ',' || r == '=' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
