// Package tlsfiles loads TLS material from files that may change while
// eddy runs: a certificate and key pair (a server's, or a client's for
// mTLS) and CA bundles. Kubernetes Secrets and cert-manager rotate the
// mounted files in place; a Keypair notices the change at the next
// handshake, so a renewed certificate is used without a restart.
//
// Errors name the setting (the flag) and the file, never its contents:
// key material must not reach logs.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// Keypair is a certificate and its private key, read from two PEM files
// and read again when either file's size or modification time changes.
// It is safe for concurrent use by the handshakes of many connections.
type Keypair struct {
	certFile, keyFile string
	setting           string // e.g. "--http-tls-cert-file/--http-tls-key-file", for errors

	mu   sync.Mutex // guards the fields below
	cert *tls.Certificate
	seen [2]fileStamp // of certFile and keyFile when cert was read
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.Size(), fi.ModTime()}, nil
}

// LoadKeypair reads the pair once (so a wrong path or a key that does not
// match the certificate fails at start, naming setting) and returns it.
func LoadKeypair(setting, certFile, keyFile string) (*Keypair, error) {
	k := &Keypair{certFile: certFile, keyFile: keyFile, setting: setting}
	if _, err := k.current(); err != nil {
		return nil, err
	}
	return k, nil
}

// current returns the pair, re-reading the files if they changed since
// the last read. A failed re-read (a half-written rotation) keeps serving
// the previous pair and reports the error only when there is none.
func (k *Keypair) current() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cs, err1 := stamp(k.certFile)
	ks, err2 := stamp(k.keyFile)
	if err1 == nil && err2 == nil && k.cert != nil && cs == k.seen[0] && ks == k.seen[1] {
		return k.cert, nil
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		// tls's errors quote no key bytes, only what is wrong.
		return nil, fmt.Errorf("%s %s, %s: %w", k.setting, k.certFile, k.keyFile, err)
	}
	k.cert, k.seen = &c, [2]fileStamp{cs, ks}
	return k.cert, nil
}

// GetCertificate is a tls.Config.GetCertificate for servers.
func (k *Keypair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.current()
}

// GetClientCertificate is a tls.Config.GetClientCertificate for clients
// (mTLS): the pair is sent whatever CAs the server names, so a server that
// does not trust it rejects the handshake with a clear alert instead of
// the client sending nothing.
func (k *Keypair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.current()
}

// CAPool reads a PEM bundle of CA certificates for setting (a flag name,
// for errors).
func CAPool(setting, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", setting, path)
	}
	return p, nil
}
