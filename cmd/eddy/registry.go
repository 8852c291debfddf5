package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
)

func registryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry --brokers HOST:PORT --http-addr HOST:PORT",
		Short: "Run eddy's Confluent-compatible schema registry, stored in a Kafka topic",
		Long: `Run eddy's own schema registry on its own: a Confluent-compatible REST API
(docs/schemas.md lists what it serves) that keeps every schema in a compacted
Kafka topic (--topic, default _schemas), written with acks=all. It reads the
topic to its end before it answers. Run one instance at a time. Stops on
SIGTERM or Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(flagString(cmd, "log-level"))
			if err != nil {
				return err
			}
			opts, err := brokerOpts(cmd)
			if err != nil {
				return err
			}
			hsec, err := httpSecurityOpts(cmd)
			if err != nil {
				return err
			}
			var users *schema.Users
			if f := flagString(cmd, "registry-users-file"); f != "" {
				if users, err = schema.LoadUsers(f); err != nil {
					return err
				}
			}
			addr, _ := cmd.Flags().GetString("http-addr")
			topic, _ := cmd.Flags().GetString("topic")
			return serveRegistry(cmd.Context(), log, splitBrokers(flagString(cmd, "brokers")), addr, topic, hsec, users, opts...)
		},
	}
	cmd.Flags().String("http-addr", "127.0.0.1:8081", "Address of the registry's HTTP API. Port 0 picks a free port.")
	cmd.Flags().String("topic", schema.DefaultTopic, "Kafka topic holding the registry's state (compacted, one partition; created if missing)")
	addSettings(cmd, brokerSettings...)
	addSettings(cmd, "log-level")
	addSettings(cmd, "http-tls-cert-file", "http-tls-key-file", "http-token-file", "http-insecure", "registry-users-file")
	return cmd
}

// serveRegistry runs the embedded registry until ctx ends.
func serveRegistry(ctx context.Context, log *slog.Logger, brokers []string, addr, topic string, hsec httpSecurity, users *schema.Users, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks())}, opts...)...)
	if err != nil {
		return fmt.Errorf("connect to %v: %w", brokers, err)
	}
	defer cl.Close()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	srv, err := schema.NewServer(sctx, cl, topic)
	cancel()
	if err != nil {
		return err
	}
	ln, err := hsec.listen(addr, hsec.token != nil || users != nil)
	if err != nil {
		return err
	}
	// With users or a token, every request needs credentials and writes
	// need the write role (schema.Guard); the registry has no open path.
	var h http.Handler = srv
	if hsec.token != nil || users != nil {
		var bearer func(string) bool
		if hsec.token != nil {
			bearer = hsec.token.Matches
		}
		h = schema.Guard(srv, users, bearer)
	}
	hs := hsec.server(h)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("serving schema registry", "addr", ln.Addr().String(), "topic", srv.Topic(), "scheme", hsec.scheme(), "users", users != nil, "token", hsec.token != nil)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(shctx)
	<-errc
	return nil
}
