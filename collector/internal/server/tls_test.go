package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/collector/internal/config"
)

type certPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newCert(t *testing.T, cn string, parent *certPair, isCA bool, usage x509.ExtKeyUsage) *certPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if !isCA {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certPair{cert: c, key: key, der: der}
}

func (c *certPair) write(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	kb, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestHTTPSWithClientCertificates serves over HTTPS with mTLS required:
// a client without a certificate from the edge CA cannot connect, one with
// it can; cancelling the context stops the server cleanly.
func TestHTTPSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := newCert(t, "edges CA", nil, true, 0)
	caFile, _ := ca.write(t, dir, "ca")
	srvCert, srvKey := newCert(t, "collector", ca, false, x509.ExtKeyUsageServerAuth).write(t, dir, "server")
	cli := newCert(t, "plant1", ca, false, x509.ExtKeyUsageClientAuth)

	e := start(t, func(c *config.Config) {
		c.TLS = config.TLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: caFile, ClientAuth: "require"}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln, nil) }()

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	url := "https://" + ln.Addr().String() + "/healthz"
	get := func(certs []tls.Certificate) error {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("healthz over mTLS: %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(nil); err == nil {
		t.Error("a client without a certificate was served")
	}
	if err := get([]tls.Certificate{{Certificate: [][]byte{cli.der}, PrivateKey: cli.key}}); err != nil {
		t.Errorf("a client with an edge certificate: %v", err)
	}
	stranger := newCert(t, "other CA", nil, true, 0)
	bad := newCert(t, "intruder", stranger, false, x509.ExtKeyUsageClientAuth)
	if err := get([]tls.Certificate{{Certificate: [][]byte{bad.der}, PrivateKey: bad.key}}); err == nil {
		t.Error("a client with a certificate from another CA was served")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := tlsConfig(config.TLS{CertFile: filepath.Join(dir, "no.crt"), KeyFile: filepath.Join(dir, "no.key")}); err == nil {
		t.Error("missing certificate files accepted")
	}
	ca := newCert(t, "ca", nil, true, 0)
	crt, key := newCert(t, "s", ca, false, x509.ExtKeyUsageServerAuth).write(t, dir, "s")
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsConfig(config.TLS{CertFile: crt, KeyFile: key, ClientCAFile: junk, ClientAuth: "optional"}); err == nil {
		t.Error("client CA file without certificates accepted")
	}
}
