package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/processor/console"
	"github.com/eddy-streams/eddy/processor/runbook"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// demoRunbooks are the runbooks `eddy demo` ships (about its traffic); the
// demo copies the missing ones into <data-dir>/runbooks, where saves stay.
//
//go:embed runbooks/*.md
var demoRunbooks embed.FS

func runbookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runbook",
		Short: "Runbooks: Markdown documents whose pipeline blocks run live in the browser",
	}
	serve := &cobra.Command{
		Use:   "serve DIR --brokers HOST:PORT",
		Short: "Serve the runbooks of DIR (*.md): each eddy block runs as a preview on the live stream",
		Long: `Serve the runbooks of DIR in the browser (docs/runbooks.md). Each eddy
block runs as a preview: the pipeline in memory, reading its source from now
(or the time its display names) without a consumer group, committing nothing
and writing to no topic. Blocks can be edited, saved back into their file and
promoted to pipeline files (DIR/pipelines/APP.yaml) for eddy run -f.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(flagString(cmd, "log-level"))
			if err != nil {
				return err
			}
			clientOpts, err := brokerOpts(cmd)
			if err != nil {
				return err
			}
			hsec, err := httpSecurityOpts(cmd)
			if err != nil {
				return err
			}
			var reg schema.Registry
			if u := flagString(cmd, "registry-url"); u != "" {
				rc, err := openRegistry(cmd, u)
				if err != nil {
					return err
				}
				defer rc.close()
				reg = rc.client()
			}
			brokers := splitBrokers(flagString(cmd, "brokers"))
			rb, err := console.NewRunbooks(console.RunbooksConfig{
				Dir: args[0], Brokers: brokers, ClientOpts: clientOpts, Registry: reg, Logger: log,
				NewEngine: previewEngine(reg, append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, clientOpts...)),
			})
			if err != nil {
				return err
			}
			defer rb.Close()
			ln, err := hsec.listen(flagString(cmd, "http-addr"), hsec.token != nil)
			if err != nil {
				return err
			}
			srv := hsec.server(hsec.guard(rb.Handler()))
			go func() { _ = srv.Serve(ln) }()
			fmt.Fprintf(cmd.ErrOrStderr(), "eddy runbook: serving %s at %s://%s/console/runbook.html\n", args[0], hsec.scheme(), ln.Addr())
			<-cmd.Context().Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			return nil
		},
	}
	addSettings(serve, "brokers", "http-addr", "log-level")
	addSettings(serve, "sasl-mechanism", "sasl-username-file", "sasl-password-file", "sasl-token-file", "tls", "tls-ca-file", "tls-cert-file", "tls-key-file")
	addSettings(serve, "registry-url")
	addSettings(serve, registryAuthSettings...)
	addSettings(serve, httpSettings...)
	cmd.AddCommand(serve)
	return cmd
}

// previewMaxOpenWindows bounds the open windows of one preview's engine.
const previewMaxOpenWindows = 20000

// previewMaxPartitions is the most source partitions a preview of a
// pipeline keyed by its grouping key reads.
const previewMaxPartitions = 256

// previewEngine makes runbook previews' engines: processor.Local, the
// code `eddy run` runs. client (seed brokers first, then TLS and SASL)
// loads the lookup tables of pipelines that have them, from their topics.
func previewEngine(reg schema.Registry, client []kgo.Opt) runbook.NewEngine {
	return func(ctx context.Context, spec *topology.Spec) (runbook.Engine, error) {
		// One aggregation partition, or (a pipeline keyed by its grouping
		// key, whose tasks are the source partitions) enough for any topic.
		parts := 1
		if spec.Source.KeyedByGroupKey {
			parts = previewMaxPartitions
		}
		return processor.NewLocal(ctx, processor.LocalConfig{Spec: spec, Registry: reg, Partitions: parts, MaxOpenWindows: previewMaxOpenWindows,
			LookupClient: client})
	}
}

// installDemoRunbooks copies the demo's runbooks missing from dir into it
// (a runbook already there, maybe edited and saved, is kept).
func installDemoRunbooks(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fs.WalkDir(demoRunbooks, "runbooks", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		dst := filepath.Join(dir, strings.TrimPrefix(p, "runbooks/"))
		if _, err := os.Stat(dst); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		b, err := demoRunbooks.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}

// openRunbooks makes the runbooks of `eddy run --runbooks DIR`, which its
// console serves; a no-op without the flag or when the caller (the demo)
// made its own. The returned func closes them.
func (o *runOptions) openRunbooks(log *slog.Logger, reg schema.Registry) (func(), error) {
	if o.runbooks != nil || o.runbooksDir == "" {
		return func() {}, nil
	}
	rb, err := console.NewRunbooks(console.RunbooksConfig{
		Dir: o.runbooksDir, Brokers: o.brokers, ClientOpts: o.clientOpts, Registry: reg, Logger: log,
		NewEngine: previewEngine(reg, append([]kgo.Opt{kgo.SeedBrokers(o.brokers...)}, o.clientOpts...)),
	})
	if err != nil {
		return nil, fmt.Errorf("--runbooks: %w", err)
	}
	o.runbooks = rb
	return rb.Close, nil
}
