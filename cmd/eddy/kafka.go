package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// brokerSettings are the settings that say how to reach and authenticate
// to the brokers. Every command that talks to Kafka registers them.
var brokerSettings = []string{"brokers", "sasl-mechanism", "sasl-username-file", "sasl-password-file", "tls", "tls-ca-file"}

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
	if ca := flagString(cmd, "tls-ca-file"); ca != "" || useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca-file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca-file %s: no PEM certificate in it", ca)
			}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}

	mech := strings.ToUpper(flagString(cmd, "sasl-mechanism"))
	userFile, passFile := flagString(cmd, "sasl-username-file"), flagString(cmd, "sasl-password-file")
	if mech == "" {
		if userFile != "" || passFile != "" {
			return nil, errors.New("--sasl-username-file/--sasl-password-file need --sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return opts, nil
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
		return nil, fmt.Errorf("--sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", mech)
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
