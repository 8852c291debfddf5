package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/internal/httpauth"
	"github.com/eddy-streams/eddy/internal/tlsfiles"
)

// httpSettings say how eddy's HTTP servers (health, metrics, console,
// state queries; eddy's registry) are secured. run, demo and registry
// register them.
var httpSettings = []string{"http-tls-cert-file", "http-tls-key-file", "http-token-file", "http-insecure", "http-metrics-open"}

// openPaths are reachable without the token: Kubernetes probes carry no
// credentials. Everything else is denied by default (httpauth.Require).
var openPaths = []string{"/healthz", "/readyz"}

// httpSecurity is the parsed httpSettings of one command.
type httpSecurity struct {
	tls         *tls.Config     // nil: plain HTTP
	token       *httpauth.Token // nil: no token required
	insecure    bool            // serve beyond loopback without credentials
	metricsOpen bool            // /metrics needs no token
}

func httpSecurityOpts(cmd *cobra.Command) (httpSecurity, error) {
	var h httpSecurity
	var err error
	for _, b := range []struct {
		flag string
		v    *bool
	}{{"http-insecure", &h.insecure}, {"http-metrics-open", &h.metricsOpen}} {
		if cmd.Flags().Lookup(b.flag) == nil {
			continue // eddy registry serves no metrics
		}
		if *b.v, err = strconv.ParseBool(flagString(cmd, b.flag)); err != nil {
			return h, fmt.Errorf("--%s %q: want true or false", b.flag, flagString(cmd, b.flag))
		}
	}
	cert, key := flagString(cmd, "http-tls-cert-file"), flagString(cmd, "http-tls-key-file")
	switch {
	case cert != "" && key != "":
		kp, err := tlsfiles.LoadKeypair("--http-tls-cert-file/--http-tls-key-file", cert, key)
		if err != nil {
			return h, err
		}
		h.tls = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.GetCertificate}
	case cert != "" || key != "":
		return h, fmt.Errorf("--http-tls-cert-file and --http-tls-key-file go together")
	}
	if f := flagString(cmd, "http-token-file"); f != "" {
		if h.token, err = httpauth.LoadToken("--http-token-file", f); err != nil {
			return h, err
		}
	}
	return h, nil
}

// scheme is "https" when the server speaks TLS.
func (h httpSecurity) scheme() string {
	if h.tls != nil {
		return "https"
	}
	return "http"
}

// guard wraps the worker's handler: with a token, every path but the
// health probes (and /metrics if --http-metrics-open) needs it.
func (h httpSecurity) guard(next http.Handler) http.Handler {
	if h.token == nil {
		return next
	}
	open := openPaths
	if h.metricsOpen {
		open = append(append([]string(nil), openPaths...), "/metrics")
	}
	return httpauth.Require(next, h.token, open...)
}

// listen binds addr for a server that is protected (a token, or users for
// eddy's registry) or not. An unprotected server may bind only loopback
// addresses, unless --http-insecure says otherwise: the bound address is
// checked, so "localhost:0" passes and ":8080" or "0.0.0.0:8080" do not.
func (h httpSecurity) listen(addr string, protected bool) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr %s: %w", addr, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && !protected && !h.insecure {
		_ = ln.Close()
		return nil, fmt.Errorf("--http-addr %s binds beyond loopback without credentials: give --http-token-file "+
			"(with --http-tls-cert-file and --http-tls-key-file), or --http-insecure true to serve it open (docs/security.md)", addr)
	}
	if h.tls != nil {
		ln = tls.NewListener(ln, h.tls)
	}
	return ln, nil
}

// server is the http.Server eddy serves handler with.
func (h httpSecurity) server(handler http.Handler) *http.Server {
	return &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
}
