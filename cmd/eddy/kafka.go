package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/eddy-streams/eddy/internal/tlsfiles"
)

// brokerSettings are the settings that say how to reach and authenticate
// to the brokers. Every command that talks to Kafka registers them.
var brokerSettings = []string{"brokers", "sasl-mechanism", "sasl-username-file", "sasl-password-file", "sasl-token-file", "tls", "tls-ca-file", "tls-cert-file", "tls-key-file"}

// brokerOpts turns the broker settings of cmd into franz-go options: TLS
// and SASL. Credential files are checked here, so a wrong path or an empty
// file fails at start with the setting's name, not later as an
// authentication error; they are read again at every authentication, so a
// rotated Kubernetes Secret is picked up without a restart.
func brokerOpts(cmd *cobra.Command) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	useTLS, err := strconv.ParseBool(flagString(cmd, "tls"))
	if err != nil {
		return nil, fmt.Errorf("--tls %q: want true or false", flagString(cmd, "tls"))
	}
	ca, cert, key := flagString(cmd, "tls-ca-file"), flagString(cmd, "tls-cert-file"), flagString(cmd, "tls-key-file")
	if ca != "" || cert != "" || key != "" || useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if ca != "" {
			if cfg.RootCAs, err = tlsfiles.CAPool("--tls-ca-file", ca); err != nil {
				return nil, err
			}
		}
		switch {
		case cert != "" && key != "":
			// mTLS: the pair is read again when its files change, so a
			// certificate renewed by cert-manager is used at the next
			// connection without a restart.
			kp, err := tlsfiles.LoadKeypair("--tls-cert-file/--tls-key-file", cert, key)
			if err != nil {
				return nil, err
			}
			cfg.GetClientCertificate = kp.GetClientCertificate
		case cert != "" || key != "":
			return nil, errors.New("--tls-cert-file and --tls-key-file go together")
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}

	mech := strings.ToUpper(flagString(cmd, "sasl-mechanism"))
	userFile, passFile := flagString(cmd, "sasl-username-file"), flagString(cmd, "sasl-password-file")
	tokenFile := flagString(cmd, "sasl-token-file")
	if mech == "" {
		if userFile != "" || passFile != "" || tokenFile != "" {
			return nil, errors.New("--sasl-username-file/--sasl-password-file/--sasl-token-file need --sasl-mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)")
		}
		return opts, nil
	}
	if mech == "OAUTHBEARER" {
		// The token is read at every authentication: whatever renews it
		// (a sidecar, a projected service-account token) rewrites the
		// file, and the next connection uses the new one.
		if tokenFile == "" || userFile != "" || passFile != "" {
			return nil, errors.New("--sasl-mechanism OAUTHBEARER needs --sasl-token-file (and no username or password file)")
		}
		if _, err := readSecretFile("--sasl-token-file", tokenFile); err != nil {
			return nil, err
		}
		return append(opts, kgo.SASL(oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := readSecretFile("--sasl-token-file", tokenFile)
			return oauth.Auth{Token: tok}, err
		}))), nil
	}
	if tokenFile != "" {
		return nil, fmt.Errorf("--sasl-token-file is for --sasl-mechanism OAUTHBEARER, not %s", mech)
	}
	if userFile == "" || passFile == "" {
		return nil, fmt.Errorf("--sasl-mechanism %s needs --sasl-username-file and --sasl-password-file", mech)
	}
	creds := func() (user, pass string, err error) {
		if user, err = readSecretFile("--sasl-username-file", userFile); err != nil {
			return "", "", err
		}
		pass, err = readSecretFile("--sasl-password-file", passFile)
		return user, pass, err
	}
	if _, _, err := creds(); err != nil {
		return nil, err
	}
	var m sasl.Mechanism
	switch mech {
	case "PLAIN":
		m = plain.Plain(func(context.Context) (plain.Auth, error) {
			u, p, err := creds()
			return plain.Auth{User: u, Pass: p}, err
		})
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		fn := func(context.Context) (scram.Auth, error) {
			u, p, err := creds()
			return scram.Auth{User: u, Pass: p}, err
		}
		if mech == "SCRAM-SHA-256" {
			m = scram.Sha256(fn)
		} else {
			m = scram.Sha512(fn)
		}
	default:
		return nil, fmt.Errorf("--sasl-mechanism %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", mech)
	}
	return append(opts, kgo.SASL(m)), nil
}

// readSecretFile reads one credential, without the trailing newline that
// `echo` or an editor leaves in a file.
func readSecretFile(setting, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", setting, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s %s: the file is empty", setting, path)
	}
	return v, nil
}

// brokerAuthError is a connection to the brokers refused for security
// reasons, with what to check. These do not pass with time, so eddy stops
// on them at once (the first admin call fails) instead of retrying.
type brokerAuthError struct {
	err  error
	hint string
}

func (e *brokerAuthError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *brokerAuthError) Unwrap() error { return e.err }

// explainBrokerErr adds what to check to a refused TLS handshake or SASL
// authentication; other errors pass unchanged. The hint names settings,
// never their values.
func explainBrokerErr(err error) error {
	var done *brokerAuthError
	if err == nil || errors.As(err, &done) {
		return err
	}
	var cve *tls.CertificateVerificationError
	msg := err.Error()
	switch {
	case errors.As(err, &cve):
		return &brokerAuthError{err, "the brokers' TLS certificate is not trusted: give the CA that signs it with --tls-ca-file"}
	case strings.Contains(msg, "remote error: tls:"):
		return &brokerAuthError{err, "the broker refused the TLS handshake: it wants a client certificate signed by a CA it trusts, given with --tls-cert-file and --tls-key-file"}
	case errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.IllegalSaslState):
		return &brokerAuthError{err, "the brokers refused the SASL credentials: check --sasl-mechanism, --sasl-username-file and --sasl-password-file (or --sasl-token-file)"}
	}
	return err
}
