package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/processor/console"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

func runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run -f pipeline.yaml --brokers HOST:PORT",
		Short: "Run a pipeline as a member of its consumer group",
		Long: `Run a pipeline as a member of the consumer group named by its app id.
Start several with the same pipeline to share the partitions; stopping one
(SIGTERM or Ctrl-C) commits its work and hands its partitions to the others.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(flagString(cmd, "log-level"))
			if err != nil {
				return err
			}
			spec, err := loadSpec(flagString(cmd, "file"))
			if err != nil {
				return err
			}
			st, err := time.ParseDuration(flagString(cmd, "session-timeout"))
			if err != nil {
				return fmt.Errorf("--session-timeout: %w", err)
			}
			clientOpts, err := brokerOpts(cmd)
			if err != nil {
				return err
			}
			hsec, err := httpSecurityOpts(cmd)
			if err != nil {
				return err
			}
			var reg *registryConn
			if u := flagString(cmd, "registry-url"); u != "" {
				if reg, err = openRegistry(cmd, u); err != nil {
					return err
				}
				defer reg.close()
			}
			cacheRows, err := applyMemoryLimit(log, flagString(cmd, "memory-limit"))
			if err != nil {
				return err
			}
			par, err := parseParallelism(flagString(cmd, "parallelism"))
			if err != nil {
				return err
			}
			return runPipeline(cmd.Context(), log, spec, runOptions{
				brokers:        splitBrokers(flagString(cmd, "brokers")),
				stateDir:       flagString(cmd, "state-dir"),
				httpAddr:       flagString(cmd, "http-addr"),
				httpAdvertise:  flagString(cmd, "http-advertise"),
				http:           hsec,
				instanceID:     flagString(cmd, "instance-id"),
				sessionTimeout: st,
				cacheRows:      cacheRows,
				parallelism:    par,
				clientOpts:     clientOpts,
				registry:       reg,
				alertmanager:   flagString(cmd, "alertmanager-url"),
				runbooksDir:    flagString(cmd, "runbooks"),
			}, nil)
		},
	}
	addSettings(cmd, "file", "brokers", "state-dir", "http-addr", "http-advertise", "instance-id", "session-timeout", "log-level")
	addSettings(cmd, "sasl-mechanism", "sasl-username-file", "sasl-password-file", "sasl-token-file", "tls", "tls-ca-file", "tls-cert-file", "tls-key-file", "memory-limit", "parallelism")
	addSettings(cmd, "registry-url")
	addSettings(cmd, registryAuthSettings...)
	addSettings(cmd, "alertmanager-url")
	addSettings(cmd, "runbooks")
	addSettings(cmd, httpSettings...)
	return cmd
}

// parseParallelism resolves the --parallelism setting: auto is 0 (the
// processor's default, GOMAXPROCS), else a positive number.
func parseParallelism(v string) (int, error) {
	if v == "auto" || v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("--parallelism %q: want auto or a positive number of goroutines (e.g. 4)", v)
	}
	return n, nil
}

type runOptions struct {
	brokers        []string
	stateDir       string
	httpAddr       string
	httpAdvertise  string       // console base URL for peers; default scheme://bound address
	http           httpSecurity // TLS and token of httpAddr
	instanceID     string
	sessionTimeout time.Duration
	cacheRows      int           // per task; 0: the processor's default
	parallelism    int           // goroutines of the tasks; 0: GOMAXPROCS
	clientOpts     []kgo.Opt     // TLS and SASL
	registry       *registryConn // schema registry, for Avro pipelines; nil: none
	alertmanager   string        // Alertmanager base URL; alerts are posted there too
	listener       net.Listener  // if set, serve HTTP on it (from http.listen) instead of listening on httpAddr (the demo listens first to print the console's address)

	runbooks    *console.Runbooks // if set, the console serves them (the demo's runbooks)
	runbooksDir string            // --runbooks: the console serves these (runbook.go)
}

// runPipeline serves HTTP and runs the pipeline until ctx ends. started, if
// set, is called with the app and the HTTP address once both exist.
func runPipeline(ctx context.Context, log *slog.Logger, spec *topology.Spec, o runOptions, started func(*processor.App, string)) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var registry schema.Registry
	if o.registry != nil {
		registry = o.registry.client()
	}
	// The listener first: its bound address is the default URL this worker
	// advertises to its peers (in its client id, processor.AdvertiseSuffix).
	ln := o.listener
	if ln == nil {
		var err error
		if ln, err = o.http.listen(o.httpAddr, o.http.token != nil); err != nil {
			return err
		}
		defer ln.Close() // on an early return; closed already after Serve
	}
	self := o.httpAdvertise
	if self == "" {
		self = o.http.scheme() + "://" + ln.Addr().String()
	}
	app, err := processor.New(processor.Config{
		Spec:           spec,
		Brokers:        o.brokers,
		StateDir:       o.stateDir,
		InstanceID:     o.instanceID,
		AdvertiseURL:   self,
		SessionTimeout: o.sessionTimeout,
		CacheRows:      o.cacheRows,
		Parallelism:    o.parallelism,
		ClientOpts:     o.clientOpts,
		Logger:         log,
		Registerer:     reg,
		Registry:       registry,

		AlertmanagerURL: o.alertmanager,
	})
	if err != nil {
		return err
	}
	closeRunbooks, err := o.openRunbooks(log, registry)
	if err != nil {
		return err
	}
	defer closeRunbooks()
	con, err := console.New(console.Config{
		Spec: spec, Brokers: o.brokers, ClientOpts: o.clientOpts, Registry: registry, Logger: log, Gatherer: reg, OpenWindowsIn: app.OpenWindowsIn, SelfURL: self,
		Runbooks: o.runbooks,
	})
	if err != nil {
		return err
	}
	defer con.Close()
	// Every route of the worker and the console, including any added
	// later, is behind the guard; only the health probes are open
	// (httpserve.go).
	srv := o.http.server(o.http.guard(withConsole(app.Handler(reg), con.Handler())))
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving health and metrics", "addr", ln.Addr().String(), "scheme", o.http.scheme(), "token", o.http.token != nil,
		"console", o.http.scheme()+"://"+ln.Addr().String()+"/console/")
	if started != nil {
		started(app, ln.Addr().String())
	}
	err = explainBrokerErr(app.Run(ctx))
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err != nil {
		// The reason, in the log as well as on stderr (main prints it), so
		// a log collector sees why the process exited.
		log.Error("exiting", "reason", err)
	}
	return err
}

// withConsole serves the console (/, /console/, /api/v1/) beside the
// worker's own routes (/healthz, /readyz, /metrics, ...).
func withConsole(worker, con http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", worker)
	mux.Handle("/{$}", con)
	mux.Handle("/console/", con)
	mux.Handle("/api/v1/", con)
	return mux
}
