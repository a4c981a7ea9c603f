package forward

import (
	"crypto/tls"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// TestMutualTLS forwards over HTTPS to a collector that verifies the edge's
// client certificate, with the collector verified through ca_file.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t, "test CA")
	caFile := filepath.Join(dir, "ca.crt")
	ca.WriteCert(t, caFile)
	srvCert := ca.Issue(t, "collector", testenv.CertOptions{}).TLS()
	cliCrt, cliKey := filepath.Join(dir, "edge.crt"), filepath.Join(dir, "edge.key")
	ca.Issue(t, "edge", testenv.CertOptions{Client: true}).WriteFiles(t, cliCrt, cliKey)
	rcv := &receiver{t: t, edgeID: testEdge, token: testToken, seen: map[string]bool{}, quit: make(chan struct{})}
	srv := httptest.NewUnstartedServer(rcv)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.StartTLS()
	rcv.srv = srv
	t.Cleanup(func() { close(rcv.quit); srv.Close() })

	q := openQueue(t)
	if err := q.Write(t.Context(), readings("s", 0, 10)); err != nil {
		t.Fatal(err)
	}
	cfg := testCfg(srv.URL)
	cfg.TLS = TLSConfig{CAFile: caFile, CertFile: cliCrt, KeyFile: cliKey}
	_, stop := start(t, cfg, q, Options{})
	waitFor(t, "delivery over mTLS", func() bool { return rcv.count() == 10 })
	stop()

	// Without the client certificate the handshake fails and data stays.
	q2 := openQueue(t)
	if err := q2.Write(t.Context(), readings("s", 100, 10)); err != nil {
		t.Fatal(err)
	}
	cfg.TLS = TLSConfig{CAFile: caFile}
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
