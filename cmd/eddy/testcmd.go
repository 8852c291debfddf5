package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/processor/eddytest"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// errTestsFailed is returned when a case fails; main exits non-zero.
var errTestsFailed = errors.New("test cases failed")

func testCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "test -f pipeline.yaml [CASES...]",
		Short: "Run a pipeline's test cases: records in, expected results, late records, dead letters and alerts out",
		Long: `Run test cases (YAML files, or directories of them) against a pipeline,
in process with the engine of eddy run, without a broker. Each mismatch is
printed with the window and field it concerns (and, in a pipeline with
several rollups, the rollup: a case names it with rollup:, default the
first); the exit status is non-zero
when a case fails. --update writes the current outputs as the expected ones
(review them as golden files). With --brokers the cases run on a real
cluster instead: the inputs are produced to fresh topics and the pipeline
runs as a consumer-group member. Without CASES, the cases/ directory next
to the pipeline file. See docs/testing-pipelines.md.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := loadSpec(flagString(cmd, "file"))
			if err != nil {
				return err
			}
			if len(args) == 0 {
				args = []string{filepath.Join(filepath.Dir(flagString(cmd, "file")), "cases")}
			}
			update, _ := cmd.Flags().GetBool("update")
			o := testOptions{update: update, brokers: splitBrokers(flagString(cmd, "brokers"))}
			if pat := flagString(cmd, "run"); pat != "" {
				if o.run, err = regexp.Compile(pat); err != nil {
					return fmt.Errorf("--run: %w", err)
				}
			}
			if len(o.brokers) > 0 {
				if o.kafka.ClientOpts, err = brokerOpts(cmd); err != nil {
					return err
				}
				if lvl := flagString(cmd, "log-level"); lvl != "" {
					if o.kafka.Logger, err = newLogger(lvl); err != nil {
						return err
					}
				}
			}
			if u := flagString(cmd, "registry-url"); u != "" {
				reg, err := openRegistry(cmd, u)
				if err != nil {
					return err
				}
				defer reg.close()
				o.registry = reg.client()
			}
			return runTests(cmd.Context(), cmd.OutOrStdout(), spec, args, o)
		},
	}
	addSettings(cmd, "file")
	cmd.Flags().Bool("update", false, "Write the current outputs as each case's expect: section (review the change as a golden file's).")
	cmd.Flags().String("run", "", "Run only the cases whose name matches this regular expression.")
	cmd.Flags().String("brokers", "", "Run the cases on this Kafka cluster (comma separated bootstrap brokers) instead of in process: fresh topics, the pipeline as a group member.")
	cmd.Flags().String("log-level", "", "With --brokers: the pipeline's log level (debug, info, warn or error); default no log.")
	addSettings(cmd, "sasl-mechanism", "sasl-username-file", "sasl-password-file", "sasl-token-file", "tls", "tls-ca-file", "tls-cert-file", "tls-key-file")
	addSettings(cmd, "registry-url")
	addSettings(cmd, registryAuthSettings...)
	return cmd
}

type testOptions struct {
	update   bool
	run      *regexp.Regexp
	brokers  []string
	kafka    eddytest.KafkaConfig
	registry schema.Registry // Avro pipelines: required with --brokers; default in process: in memory
}

// runTests runs every case under paths and prints one line per case and
// one per mismatch.
func runTests(ctx context.Context, w io.Writer, spec *topology.Spec, paths []string, o testOptions) error {
	var cases []*eddytest.Case
	for _, p := range paths {
		cs, err := eddytest.LoadCases(p)
		if err != nil {
			return err
		}
		cases = append(cases, cs...)
	}
	mode := "in process"
	if len(o.brokers) > 0 {
		mode = "on " + o.brokers[0]
		o.kafka.Brokers = o.brokers
		o.kafka.Registry = o.registry
		if o.kafka.Logger == nil {
			o.kafka.Logger = slog.New(slog.DiscardHandler)
		}
	}
	passed, failed, updated := 0, 0, 0
	for _, c := range cases {
		if o.run != nil && !o.run.MatchString(c.Name) {
			continue
		}
		began := time.Now()
		var out *eddytest.Outcome
		var err error
		if len(o.brokers) > 0 {
			out, err = c.RunKafka(ctx, spec, o.kafka)
		} else {
			out, err = c.Run(spec, o.registry)
		}
		took := time.Since(began).Round(time.Millisecond)
		if err != nil {
			failed++
			fmt.Fprintf(w, "FAIL %s (%s, %s): %v\n", c.Name, c.Path, took, err)
			continue
		}
		if o.update {
			if err := c.Update(c.Expected(out)); err != nil {
				return fmt.Errorf("%s: %w", c.Path, err)
			}
			updated++
			fmt.Fprintf(w, "updated %s (%s): %d results, %d late, %d dead letters, %d alerts\n", c.Name, c.Path,
				len(out.Results), len(out.Late), len(out.DeadLetters), len(out.Alerts))
			continue
		}
		if diffs := c.Check(spec, out); len(diffs) > 0 {
			failed++
			fmt.Fprintf(w, "FAIL %s (%s, %s)\n", c.Name, c.Path, took)
			for _, d := range diffs {
				fmt.Fprintf(w, "    %s\n", d)
			}
			continue
		}
		passed++
		fmt.Fprintf(w, "ok   %s (%s)\n", c.Name, took)
	}
	switch {
	case o.update:
		fmt.Fprintf(w, "%d cases updated %s, %d failed to run\n", updated, mode, failed)
	default:
		fmt.Fprintf(w, "%d passed, %d failed (%s)\n", passed, failed, mode)
	}
	if failed > 0 {
		return errTestsFailed
	}
	if passed+updated == 0 {
		return errors.New("no case ran (check the paths and --run)")
	}
	return nil
}
