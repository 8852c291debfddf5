package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/generator"
	"github.com/eddy-streams/eddy/schema"
)

func generateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate --brokers HOST:PORT --topic T --rate N",
		Short: "Produce realistic HTTP request events (JSON) to a topic, as the demo does",
		Long: `Produce HTTP request events, one JSON object per record, at --rate per
second: a few services and endpoints with their own latency profiles and error
rates, some events out of order and a few late. They fit the bundled pipeline
(deploy/pipelines/http-requests.yaml). The topic must exist or the brokers must
create it on first use. Runs until stopped (SIGTERM or Ctrl-C), or for
--duration, then flushes what it produced and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topic, _ := cmd.Flags().GetString("topic")
			rate, _ := cmd.Flags().GetInt("rate")
			dur, _ := cmd.Flags().GetDuration("duration")
			if topic == "" {
				return errors.New("--topic is empty: name the topic to produce to")
			}
			if rate < 1 {
				return fmt.Errorf("--rate %d: want at least 1 event per second", rate)
			}
			opts, err := brokerOpts(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if dur > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, dur)
				defer cancel()
			}
			brokers := flagString(cmd, "brokers")
			fmt.Fprintf(os.Stderr, "eddy generate: %d events/s to %s on %s\n", rate, topic, brokers)
			incidents, _ := cmd.Flags().GetBool("incidents")
			return generate(ctx, splitBrokers(brokers), topic, rate, incidents, nil, opts...)
		},
	}
	cmd.Flags().String("topic", "http-requests", "Topic to produce to")
	cmd.Flags().Int("rate", 200, "Events per second")
	cmd.Flags().Duration("duration", 0, "Stop after this long and exit 0 (0: run until stopped)")
	cmd.Flags().Bool("incidents", false, "Every minute, inject the demo's incidents: an error burst on /api/login (2-17s), a latency spike on /api/pay (12-27s) and no traffic on /api/search (15-35s)")
	addSettings(cmd, brokerSettings...)
	return cmd
}

// generate produces generated events at rate per second until ctx ends,
// then flushes. A produce error (topic missing, authentication failed)
// ends it with that error.
// With enc set, events are Avro in the Confluent wire format (enc's
// schema must be generator.AvroSchema); otherwise JSON.
func generate(ctx context.Context, brokers []string, topic string, rate int, incidents bool, enc *schema.Encoder, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var (
		mu       sync.Mutex
		firstErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil && ctx.Err() == nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
	}
	g := generator.New(uint64(time.Now().UnixNano()))
	if incidents {
		g.Incidents, g.IncidentCycle = generator.DemoIncidents, time.Minute
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	start, sent := time.Now(), int64(0)
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return cl.Flush(fctx)
		case now := <-tick.C:
			mu.Lock()
			err := firstErr
			mu.Unlock()
			if err != nil {
				return fmt.Errorf("produce to %s: %w", topic, err)
			}
			due := int64(now.Sub(start).Seconds()*float64(rate)) - sent
			for ; due > 0; due-- {
				ev := g.Next(now)
				var b []byte
				if enc != nil {
					var err error
					if b, err = enc.Encode(ev.Map()); err != nil {
						return fmt.Errorf("encode event: %w", err)
					}
				} else {
					b, _ = json.Marshal(ev)
				}
				cl.Produce(ctx, &kgo.Record{Value: b}, promise)
				sent++
			}
		}
	}
}
