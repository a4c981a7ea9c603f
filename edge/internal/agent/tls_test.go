package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
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
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sm-edge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		write(name+".pem", "CERTIFICATE", der)
		write(name+"-key.pem", "PRIVATE KEY", kder)
	}
	issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	issue("client", 3, x509.ExtKeyUsageClientAuth, nil)
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
