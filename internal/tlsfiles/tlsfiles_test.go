package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// writePair writes a self-signed certificate for cn and its key.
func writePair(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func cn(t *testing.T, k *Keypair) string {
	t.Helper()
	c, err := k.GetClientCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return x.Subject.CommonName
}

// TestKeypairReload: a renewed pair (as cert-manager rewrites a Secret)
// is used at the next handshake; a half-written one keeps the old pair.
func TestKeypairReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, cf, kf, "first")
	k, err := LoadKeypair("--tls-cert-file/--tls-key-file", cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	if got := cn(t, k); got != "first" {
		t.Fatalf("CN %q, want first", got)
	}
	writePair(t, cf, kf, "renewed")
	later := time.Now().Add(time.Minute)
	_ = os.Chtimes(cf, later, later)
	if got := cn(t, k); got != "renewed" {
		t.Errorf("after renewal: CN %q, want renewed", got)
	}
	if err := os.WriteFile(kf, []byte("garbage"), 0o600); err != nil { // mid-rotation
		t.Fatal(err)
	}
	if got := cn(t, k); got != "renewed" {
		t.Errorf("with a broken key file: CN %q, want the last good pair (renewed)", got)
	}
}

func TestLoadKeypairErrors(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	writePair(t, cf, kf, "a")
	cf2, kf2 := filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key")
	writePair(t, cf2, kf2, "b")
	_, err := LoadKeypair("--tls-cert-file/--tls-key-file", cf, kf2) // a key that does not match
	if err == nil || !strings.Contains(err.Error(), "--tls-cert-file") {
		t.Errorf("mismatched pair: %v, want an error naming the setting", err)
	}
	key, _ := os.ReadFile(kf2)
	if err != nil && strings.Contains(err.Error(), string(key[30:60])) {
		t.Error("the error shows key material")
	}
	if _, err := CAPool("--tls-ca-file", kf); err == nil {
		t.Error("a key file was accepted as a CA bundle")
	}
}
