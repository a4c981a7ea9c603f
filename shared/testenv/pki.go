package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"testing"
	"time"
)

// Cert is a test certificate (ECDSA P-256) with its private key.
type Cert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CertOptions says what Issue puts in a certificate.
type CertOptions struct {
	// Client makes a client certificate (ExtKeyUsageClientAuth); otherwise
	// it is a server certificate.
	Client bool
	// Life is how long from now the certificate stays valid; 0 means a day,
	// a negative Life makes a certificate that expired -Life ago.
	Life time.Duration
}

// NewCA returns a self-signed CA named cn, valid from an hour ago for a year.
func NewCA(t testing.TB, cn string) *Cert {
	t.Helper()
	now := time.Now()
	return newCert(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
}

// Issue returns a certificate named cn for localhost and 127.0.0.1, signed
// by ca.
func (ca *Cert) Issue(t testing.TB, cn string, o CertOptions) *Cert {
	t.Helper()
	now, life := time.Now(), o.Life
	if life == 0 {
		life = 24 * time.Hour
	}
	notBefore := now.Add(-time.Hour)
	if life < 0 {
		notBefore = now.Add(life - 24*time.Hour)
	}
	usage := x509.ExtKeyUsageServerAuth
	if o.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	return newCert(t, &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: now.Add(life),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, ca)
}

// newCert signs tmpl with parent, or self-signs it when parent is nil.
func newCert(t testing.TB, tmpl *x509.Certificate, parent *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{Cert: c, Key: key}
}

// CertPEM is the certificate as a PEM block.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// KeyPEM is the private key as a PKCS #8 PEM block.
func (c *Cert) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteCert writes the certificate as PEM to file.
func (c *Cert) WriteCert(t testing.TB, file string) {
	t.Helper()
	writeFile(t, file, c.CertPEM())
}

// WriteFiles writes the certificate and its key as PEM to certFile and
// keyFile. The files are world-readable: Mosquitto started as root drops
// privileges and must still read its key.
func (c *Cert) WriteFiles(t testing.TB, certFile, keyFile string) {
	t.Helper()
	writeFile(t, certFile, c.CertPEM())
	writeFile(t, keyFile, c.KeyPEM(t))
}

func writeFile(t testing.TB, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TLS is the certificate and key for a tls.Config.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
}

// Pool is a pool that trusts c.
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}
