package forward

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate and key for localhost to
// dir and returns their paths and the parsed certificate.
func selfSigned(t *testing.T, dir, name string, client bool) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true, IsCA: true,
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// TestMutualTLS forwards over HTTPS to a collector that verifies the edge's
// client certificate, with the collector verified through ca_file.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	srvCrt, _, srvCert := selfSigned(t, dir, "collector", false)
	cliCrt, cliKey, _ := selfSigned(t, dir, "edge", true)
	rcv := &receiver{t: t, edgeID: testEdge, token: testToken, seen: map[string]bool{}, quit: make(chan struct{})}
	srv := httptest.NewUnstartedServer(rcv)
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cliCrt)
	pool.AppendCertsFromPEM(pem)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.StartTLS()
	rcv.srv = srv
	t.Cleanup(func() { close(rcv.quit); srv.Close() })

	q := openQueue(t)
	if err := q.Write(t.Context(), readings("s", 0, 10)); err != nil {
		t.Fatal(err)
	}
	cfg := testCfg(srv.URL)
	cfg.TLS = TLSConfig{CAFile: srvCrt, CertFile: cliCrt, KeyFile: cliKey}
	_, stop := start(t, cfg, q, Options{})
	waitFor(t, "delivery over mTLS", func() bool { return rcv.count() == 10 })
	stop()

	// Without the client certificate the handshake fails and data stays.
	q2 := openQueue(t)
	if err := q2.Write(t.Context(), readings("s", 100, 10)); err != nil {
		t.Fatal(err)
	}
	cfg.TLS = TLSConfig{CAFile: srvCrt}
	f, stop2 := start(t, cfg, q2, Options{})
	waitFor(t, "a failed attempt", func() bool { return f.State().LastError != "" })
	stop2()
	if s := q2.Stats(); s.Records != 10 {
		t.Errorf("queue holds %d records after failed handshakes, want 10", s.Records)
	}

	// A bad CA file is a clear configuration error.
	bad := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(bad, []byte("not pem"), 0o600)
	cfg.TLS = TLSConfig{CAFile: bad}
	if _, err := NewHTTPClient(cfg); err == nil {
		t.Error("a CA file without certificates was accepted")
	}
}
