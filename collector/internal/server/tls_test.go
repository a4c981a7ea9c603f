package server

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

// TestHTTPSWithClientCertificates serves over HTTPS with mTLS required:
// a client without a certificate from the edge CA cannot connect, one with
// it can; cancelling the context stops the server cleanly.
func TestHTTPSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t, "edges CA")
	caFile := filepath.Join(dir, "ca.crt")
	ca.WriteCert(t, caFile)
	srvCert, srvKey := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	ca.Issue(t, "collector", testenv.CertOptions{}).WriteFiles(t, srvCert, srvKey)
	cli := ca.Issue(t, "plant1", testenv.CertOptions{Client: true})

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

	roots := ca.Pool()
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
	if err := get([]tls.Certificate{cli.TLS()}); err != nil {
		t.Errorf("a client with an edge certificate: %v", err)
	}
	bad := testenv.NewCA(t, "other CA").Issue(t, "intruder", testenv.CertOptions{Client: true})
	if err := get([]tls.Certificate{bad.TLS()}); err == nil {
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
	crt, key := filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key")
	testenv.NewCA(t, "ca").Issue(t, "s", testenv.CertOptions{}).WriteFiles(t, crt, key)
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsConfig(config.TLS{CertFile: crt, KeyFile: key, ClientCAFile: junk, ClientAuth: "optional"}); err == nil {
		t.Error("client CA file without certificates accepted")
	}
}
