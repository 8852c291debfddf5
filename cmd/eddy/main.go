// Command eddy is a stream processor for operational event data: windowed,
// keyed aggregates over Kafka topics with state in Pebble backed by
// changelog topics. This binary is thin: each subcommand turns flags into a
// config and runs the packages that do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/topology"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := rootCmd()
	stopProfiles := startProfiles()
	err := root.ExecuteContext(ctx)
	stopProfiles()
	if err != nil {
		fmt.Fprintln(os.Stderr, "eddy:", explainBrokerErr(err))
		os.Exit(1)
	}
}

// rootCmd is the eddy command with every subcommand, fresh for each use
// (flags keep their parsed values).
func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "eddy",
		Short:         "eddy turns event streams on Kafka into windowed aggregates and alerts",
		Version:       buildVersion().Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// --version prints what `eddy version` prints (the text has no template actions).
	root.SetVersionTemplate(buildVersion().String())
	root.SetGlobalNormalizationFunc(normalizeFlag)
	root.AddCommand(runCmd(), describeCmd(), demoCmd(), settingsCmd(), generateCmd())
	root.AddCommand(schemaCmd(), registryCmd(), produceCmd())
	root.AddCommand(resetCmd(), versionCmd())
	root.AddCommand(testCmd())
	root.AddCommand(runbookCmd())
	return root
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func loadSpec(path string) (*topology.Spec, error) {
	if path == "" {
		return nil, errors.New("no pipeline: pass -f pipeline.yaml (or set EDDY_PIPELINE)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	spec, err := topology.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s:\n%w", path, err)
	}
	return spec, nil
}

func splitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func describeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe -f pipeline.yaml [--brokers host:port]",
		Short: "Print the topology of a pipeline and explain its windows in plain words",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := loadSpec(flagString(cmd, "file"))
			if err != nil {
				return err
			}
			p, _ := cmd.Flags().GetInt32("partitions")
			fmt.Fprint(cmd.OutOrStdout(), topology.Describe(spec, p))
			if describeBrokersGiven(cmd) {
				fmt.Fprintln(cmd.OutOrStdout())
				return describeTopicSettings(cmd, spec, cmd.OutOrStdout())
			}
			return nil
		},
	}
	addSettings(cmd, "file")
	// With --brokers, describe also checks the existing topics' settings.
	addSettings(cmd, brokerSettings...)
	cmd.Flags().Int32("partitions", 0, "Input partition count to show (0: one per source partition)")
	return cmd
}

func settingsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "settings",
		Short: "Print every worker setting with its flag, environment variable and default (Markdown)",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			writeSettingsTable(cmd.OutOrStdout())
		},
	}
}
