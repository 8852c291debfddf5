package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/eddy-streams/eddy/internal/tlsfiles"
	"github.com/eddy-streams/eddy/schema"
)

// registryAuthSettings say how to authenticate to a schema registry and
// trust it. Every command that talks to a registry (run, schema, produce)
// registers them under the same names.
var registryAuthSettings = []string{"registry-username-file", "registry-password-file", "registry-token-file",
	"registry-ca-file", "registry-cert-file", "registry-key-file"}

// addSettingsTo registers the named settings on fs (persistent flags of a
// command group, such as eddy schema's), like addSettings.
func addSettingsTo(fs *pflag.FlagSet, names ...string) {
	for _, n := range names {
		addSettingDefault(fs, n, settingFor(n).def)
	}
}

// registryConn is how eddy reaches one registry: its URL and an HTTP
// transport that presents the credentials and checks the registry's
// certificate. Credential files are read at every request (a rotated
// Secret is used at once) and never logged: errors name the setting and
// the file, not the content.
type registryConn struct {
	url   string
	rt    http.RoundTripper
	owned *http.Transport // closed by close
}

// openRegistry builds the registryConn of cmd's registry settings for
// url. It checks the credential files now, so a wrong path fails at start
// naming the setting.
func openRegistry(cmd *cobra.Command, url string) (*registryConn, error) {
	// Credentials in the URL (https://key:secret@host) become basic auth
	// and leave the URL, which error messages quote.
	var urlUser, urlPass string
	if u, err := neturl.Parse(url); err == nil && u.User != nil {
		urlUser = u.User.Username()
		urlPass, _ = u.User.Password()
		u.User = nil
		url = u.String()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	ca, cert, key := flagString(cmd, "registry-ca-file"), flagString(cmd, "registry-cert-file"), flagString(cmd, "registry-key-file")
	if ca != "" || cert != "" || key != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if ca != "" {
			pool, err := tlsfiles.CAPool("--registry-ca-file", ca)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = pool
		}
		switch {
		case cert != "" && key != "":
			kp, err := tlsfiles.LoadKeypair("--registry-cert-file/--registry-key-file", cert, key)
			if err != nil {
				return nil, err
			}
			cfg.GetClientCertificate = kp.GetClientCertificate
		case cert != "" || key != "":
			return nil, errors.New("--registry-cert-file and --registry-key-file go together")
		}
		tr.TLSClientConfig = cfg
	}
	a := &registryAuth{base: tr,
		userFile: flagString(cmd, "registry-username-file"), passFile: flagString(cmd, "registry-password-file"),
		tokenFile: flagString(cmd, "registry-token-file")}
	a.user, a.pass = urlUser, urlPass
	switch {
	case urlUser != "" && (a.userFile != "" || a.tokenFile != ""):
		return nil, errors.New("--registry-url holds a user: give it there or in --registry-username-file/--registry-token-file, not both")
	case (a.userFile == "") != (a.passFile == ""):
		return nil, errors.New("--registry-username-file and --registry-password-file go together")
	case a.userFile != "" && a.tokenFile != "":
		return nil, errors.New("give --registry-username-file/--registry-password-file (basic auth) or --registry-token-file (bearer), not both")
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return &registryConn{url: url, rt: a, owned: tr}, nil
}

// client returns a schema.Client over the connection; close the
// registryConn, not the client.
func (r *registryConn) client() *schema.Client {
	return schema.NewClient(r.url, schema.ClientTransport(r.rt))
}

func (r *registryConn) close() { r.owned.CloseIdleConnections() }

// registryAuth adds the Authorization header to every request: basic auth
// from two files (as Confluent Cloud API keys are given), or a bearer
// token from one.
type registryAuth struct {
	base                          http.RoundTripper
	userFile, passFile, tokenFile string
	user, pass                    string // from the URL, when it held them
}

func (a *registryAuth) check() error {
	_, err := a.header()
	return err
}

// header reads the credential files and returns the Authorization value
// ("" for none).
func (a *registryAuth) header() (string, error) {
	switch {
	case a.tokenFile != "":
		tok, err := readSecretFile("--registry-token-file", a.tokenFile)
		if err != nil {
			return "", err
		}
		return "Bearer " + tok, nil
	case a.userFile != "":
		u, err := readSecretFile("--registry-username-file", a.userFile)
		if err != nil {
			return "", err
		}
		p, err := readSecretFile("--registry-password-file", a.passFile)
		if err != nil {
			return "", err
		}
		return basicAuth(u, p), nil
	case a.user != "":
		return basicAuth(a.user, a.pass), nil
	}
	return "", nil
}

func (a *registryAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	h, err := a.header()
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip closes the body, even on error
		}
		return nil, fmt.Errorf("schema registry credentials: %w", err)
	}
	if h != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", h)
	}
	return a.base.RoundTrip(req)
}

func basicAuth(user, pass string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}
