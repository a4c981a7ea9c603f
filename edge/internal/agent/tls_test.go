package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate (all signed by the CA) into dir.
func testPKI(t *testing.T, dir string) {
	t.Helper()
	ca := testenv.NewCA(t, "sm-edge test CA")
	ca.WriteCert(t, filepath.Join(dir, "ca.pem"))
	for _, name := range []string{"server", "client"} {
		ca.Issue(t, name, testenv.CertOptions{Client: name == "client"}).
			WriteFiles(t, filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	}
}

// TestTLSWithClientCertificate: the agent connects to a broker that
// requires a client certificate (mTLS) and ingests over it; a client
// without a certificate is refused by the same broker.
func TestTLSWithClientCertificate(t *testing.T) {
	t.Parallel()
	pki := t.TempDir()
	// Mosquitto started as root drops privileges to its own user, which must
	// be able to read the server key: open up the test's temp directories.
	for _, d := range []string{pki, filepath.Dir(pki)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testPKI(t, pki)
	port := testenv.FreePort(t)
	mq := testenv.StartMosquitto(t, fmt.Sprintf(`listener %d 127.0.0.1
cafile %[2]s/ca.pem
certfile %[2]s/server.pem
keyfile %[2]s/server-key.pem
require_certificate true
`, port, pki))
	if err := testenv.WaitTCP(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	tlsURL := fmt.Sprintf("ssl://127.0.0.1:%d", port)
	cfg, profiles := testConfig(t, fmt.Sprintf(`  url: %s
  tls:
    ca_file: %[2]s/ca.pem
    cert_file: %[2]s/client.pem
    key_file: %[2]s/client-key.pem`, tlsURL, pki), sessionSubs)
	sink := &recordingSink{}
	r := startAgent(t, cfg, profiles, sink)
	pub := publisher(t, mq.URL) // plain listener of the same broker
	publish(t, pub, 1, "s/a/x", []byte(`{"v": 42, "ts": 1764151200000}`))
	waitFor(t, 10*time.Second, "reading over mTLS", func() bool { return sink.count() == 1 })
	r.stop(t)

	// Without a client certificate the broker refuses the TLS handshake.
	noCert := cfg.Broker
	noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
	tc, err := noCert.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(tlsURL).SetTLSConfig(tc).SetClientID("nocert").SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	tok.WaitTimeout(10 * time.Second)
	if tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("connected without a client certificate")
	}
}
