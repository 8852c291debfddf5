package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/admin"
	"github.com/eddy-streams/eddy/topology"
)

// describeBrokersGiven reports whether `eddy describe` was told where the
// brokers are (--brokers or EDDY_BROKERS); only then does it connect.
func describeBrokersGiven(cmd *cobra.Command) bool {
	_, env := os.LookupEnv("EDDY_BROKERS")
	return cmd.Flags().Changed("brokers") || env
}

// describeTopicSettings connects to the brokers and prints the settings of
// the pipeline's existing topics that would delete what eddy writes before
// it is read (the same check `eddy run` logs at start), each with its fix.
func describeTopicSettings(cmd *cobra.Command, spec *topology.Spec, w io.Writer) error {
	opts, err := brokerOpts(cmd)
	if err != nil {
		return err
	}
	brokers := flagString(cmd, "brokers")
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitBrokers(brokers)...)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	problems, err := admin.CheckTopics(ctx, kadm.NewClient(cl), spec)
	if err != nil {
		return fmt.Errorf("check the settings of the pipeline's topics on %s: %w", brokers, err)
	}
	fmt.Fprintf(w, "Settings of the existing topics, on %s\n", brokers)
	if len(problems) == 0 {
		fmt.Fprintln(w, "  None of them would delete what eddy writes before it is read (topics that do not exist yet are created with the settings above).")
		return nil
	}
	admin.PrintTopicProblems(w, problems, brokers)
	return nil
}
