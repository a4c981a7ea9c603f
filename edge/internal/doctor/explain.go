package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// postHandshakeWait is how long the TLS check waits for a server's
// late refusal of the client certificate (TLS 1.3).
const postHandshakeWait = 300 * time.Millisecond

func splitHostPort(s string) (string, string, error) { return net.SplitHostPort(s) }
func joinHostPort(h, p string) string                { return net.JoinHostPort(h, p) }

// dialTCP connects to addr and explains a failure: what (e.g. "broker")
// names the peer and field the config key to check.
func dialTCP(ctx context.Context, timeout time.Duration, what, field, addr string) (net.Conn, Result) {
	res := Result{Name: what + ".tcp"}
	d := net.Dialer{Timeout: timeout}
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		res.Status = OK
		res.Detail = fmt.Sprintf("%s reachable at %s (%s from %s)", what, addr, roundDur(time.Since(start)), conn.LocalAddr())
		return conn, res
	}
	res.Status = Fail
	res.Detail, res.Hint = explainDial(err, what, field, addr, timeout)
	return nil, res
}

// explainDial turns a dial error into a detail and a hint.
func explainDial(err error, what, field, addr string, timeout time.Duration) (string, string) {
	host, port, _ := net.SplitHostPort(addr)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return fmt.Sprintf("cannot resolve %s: no such host", host),
				fmt.Sprintf("check the host name in %s; if it is right, the box's DNS (/etc/resolv.conf) does not know it: use the IP address or fix DNS", field)
		}
		return fmt.Sprintf("cannot resolve %s: %v", host, dnsErr.Err),
			"the DNS server did not answer: check the box's network and /etc/resolv.conf, or use the IP address in " + field
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("connection to %s refused: nothing listens on port %s", addr, port),
			fmt.Sprintf("is the %s running on %s, and is the port in %s right?", what, host, field)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("no route to %s: %v", addr, err),
			"check the box's network (cable, VLAN, default gateway: `ip route`) and " + field
	case isTimeout(err):
		return fmt.Sprintf("no answer from %s within %s", addr, timeout),
			fmt.Sprintf("a firewall probably drops traffic to %s port %s: ask the network team to open it, and check %s", host, port, field)
	}
	return fmt.Sprintf("cannot connect to %s: %v", addr, err), "check " + field + " and the box's network"
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handshake runs a TLS handshake over conn and explains a failure.
func handshake(ctx context.Context, timeout time.Duration, conn net.Conn, tc *tls.Config, what, prefix, host string) (*tls.ConnectionState, Result) {
	res := Result{Name: what + ".tls"}
	tc = tc.Clone()
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tconn := tls.Client(conn, tc)
	err := tconn.HandshakeContext(hctx)
	if err == nil {
		// With TLS 1.3 the server checks our certificate after the client
		// has finished its handshake; a refusal arrives as an alert or a
		// reset on the first read. MQTT and HTTP servers send nothing
		// unasked, so a read that times out means the session stands.
		_ = tconn.SetReadDeadline(time.Now().Add(min(timeout, postHandshakeWait)))
		var one [1]byte
		_, rerr := tconn.Read(one[:])
		if rerr != nil && !isTimeout(rerr) {
			_ = tconn.Close()
			res.Status = Fail
			res.Detail = fmt.Sprintf("the %s closed the connection right after the TLS handshake: %v", what, rerr)
			if len(tc.Certificates) == 0 {
				res.Hint = fmt.Sprintf("the %s probably requires a client certificate: set %s.cert_file and %s.key_file to one issued by the CA it trusts", what, prefix, prefix)
			} else {
				res.Hint = fmt.Sprintf("the %s probably does not accept our client certificate (%s.cert_file): it must be issued by the CA it trusts for clients, and be valid now", what, prefix)
			}
			return nil, res
		}
		st := tconn.ConnectionState()
		_ = tconn.Close()
		res.Status = OK
		leaf := st.PeerCertificates[0]
		res.Detail = fmt.Sprintf("%s, certificate %q issued by %q, verified", tls.VersionName(st.Version), certName(leaf), leaf.Issuer.CommonName)
		if tc.InsecureSkipVerify {
			res.Status = Warn
			res.Detail = fmt.Sprintf("%s, certificate %q NOT verified (%s.insecure_skip_verify is set)", tls.VersionName(st.Version), certName(leaf), prefix)
			res.Hint = fmt.Sprintf("anyone on the network can impersonate the %s: set %s.ca_file to the CA that signed its certificate and remove insecure_skip_verify", what, prefix)
		}
		return &st, res
	}
	_ = conn.Close()
	res.Status = Fail
	res.Detail, res.Hint = explainTLS(err, what, prefix, tc.ServerName)
	return nil, res
}

// explainTLS turns a handshake error into a detail and a hint.
func explainTLS(err error, what, prefix, serverName string) (string, string) {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rec tls.RecordHeaderError
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
		leaf := ve.UnverifiedCertificates[0]
		switch {
		case errors.As(err, &ua):
			return fmt.Sprintf("the %s's certificate %q is issued by %q, which is not a trusted CA", what, certName(leaf), leaf.Issuer.CommonName),
				fmt.Sprintf("set %s.ca_file to the PEM file of the CA %q (ask whoever runs the %s for it)", prefix, leaf.Issuer.CommonName, what)
		case errors.As(err, &he):
			return fmt.Sprintf("the %s's certificate is for %s, not for %q", what, certNames(leaf), serverName),
				fmt.Sprintf("use one of those names in the URL, or set %s.server_name to one of them", prefix)
		case errors.As(err, &ci) && ci.Reason == x509.Expired:
			return fmt.Sprintf("the %s's certificate %q is not valid now (valid %s to %s)", what, certName(leaf), leaf.NotBefore.UTC().Format(time.DateOnly), leaf.NotAfter.UTC().Format(time.DateOnly)),
				fmt.Sprintf("if the dates are right, the %s needs a new certificate; if they are not, fix this box's clock (timedatectl set-ntp true)", what)
		}
	}
	switch {
	case errors.As(err, &rec), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF):
		return fmt.Sprintf("the %s does not speak TLS on this port (%v)", what, err),
			"this port is a plain listener: use the TLS port (MQTT: usually 8883) or a plain URL scheme (tcp:// or http://)"
	case isTimeout(err):
		return fmt.Sprintf("TLS handshake with the %s timed out", what), "the port accepts connections but does not complete TLS: check the port and any proxy in between"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"), strings.Contains(msg, "handshake failure") && !strings.Contains(msg, "x509"):
		return fmt.Sprintf("the %s refused the handshake: %v", what, err),
			fmt.Sprintf("the %s probably requires a client certificate it trusts: set %s.cert_file and %s.key_file to one issued by its CA", what, prefix, prefix)
	case strings.Contains(msg, "unknown certificate authority"):
		return fmt.Sprintf("the %s does not trust our client certificate: %v", what, err),
			fmt.Sprintf("%s.cert_file must be issued by the CA the %s trusts for clients", prefix, what)
	case strings.Contains(msg, "expired certificate"):
		return fmt.Sprintf("the %s refused our client certificate as expired: %v", what, err),
			fmt.Sprintf("renew %s.cert_file, or fix this box's clock if it is wrong", prefix)
	}
	return fmt.Sprintf("TLS handshake with the %s failed: %v", what, err), fmt.Sprintf("check %s and the %s's TLS settings", prefix, what)
}

func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

func certNames(c *x509.Certificate) string {
	var ns []string
	ns = append(ns, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		ns = append(ns, ip.String())
	}
	if len(ns) == 0 {
		return fmt.Sprintf("%q (no subject alternative names)", c.Subject.CommonName)
	}
	return strings.Join(ns, ", ")
}

// namedCert is a certificate and where it came from.
type namedCert struct {
	role string // "CA file", "client certificate", "server certificate"
	file string // "" for the certificate the peer presented
	cert *x509.Certificate
}

// readCertFile parses every certificate in a PEM file.
func readCertFile(role, file string) ([]namedCert, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []namedCert
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, namedCert{role: role, file: file, cert: c})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return out, nil
}

// checkCerts reports the expiry of certs: fail when one is expired or not
// yet valid, warn when one expires within certWarnBefore.
func checkCerts(name, what, prefix string, certs []namedCert, now time.Time) Result {
	res := Result{Name: name, Status: OK}
	var parts, hints []string
	worst := OK
	raise := func(s Status) {
		if s == Fail || (s == Warn && worst == OK) {
			worst = s
		}
	}
	for _, nc := range certs {
		c := nc.cert
		where := nc.role
		if nc.file != "" {
			where += " " + nc.file
		}
		left := c.NotAfter.Sub(now)
		switch {
		case now.After(c.NotAfter):
			raise(Fail)
			parts = append(parts, fmt.Sprintf("%s %q EXPIRED on %s", where, certName(c), c.NotAfter.UTC().Format(time.DateOnly)))
			hints = append(hints, renewHint(nc, what, prefix))
		case now.Before(c.NotBefore):
			raise(Fail)
			parts = append(parts, fmt.Sprintf("%s %q not valid before %s", where, certName(c), c.NotBefore.UTC().Format(time.RFC3339)))
			hints = append(hints, "this box's clock may be behind: check `timedatectl status` and enable NTP (timedatectl set-ntp true)")
		case left < certWarnBefore:
			raise(Warn)
			parts = append(parts, fmt.Sprintf("%s %q expires in %d day(s) (%s)", where, certName(c), int(left.Hours()/24), c.NotAfter.UTC().Format(time.DateOnly)))
			hints = append(hints, renewHint(nc, what, prefix))
		default:
			parts = append(parts, fmt.Sprintf("%s %q valid until %s", where, certName(c), c.NotAfter.UTC().Format(time.DateOnly)))
		}
	}
	res.Status = worst
	res.Detail = strings.Join(parts, "; ")
	res.Hint = strings.Join(dedup(hints), "; ")
	return res
}

func renewHint(nc namedCert, what, prefix string) string {
	switch nc.role {
	case "client certificate":
		return fmt.Sprintf("get a new client certificate issued and replace %s (%s.cert_file and key_file)", nc.file, prefix)
	case "CA file":
		return fmt.Sprintf("replace %s (%s.ca_file) with the CA's renewed certificate", nc.file, prefix)
	}
	return fmt.Sprintf("the %s's certificate must be renewed: tell whoever runs the %s", what, what)
}

func dedup(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// certsOf gathers the configured CA and client certificates and the
// peer's leaf; unreadable files are reported as errors.
func certsOf(caFile, certFile string, peer *tls.ConnectionState) ([]namedCert, []string) {
	var out []namedCert
	var errs []string
	if caFile != "" {
		cs, err := readCertFile("CA file", caFile)
		if err != nil {
			errs = append(errs, err.Error())
		}
		out = append(out, cs...)
	}
	if certFile != "" {
		cs, err := readCertFile("client certificate", certFile)
		if err != nil {
			errs = append(errs, err.Error())
		}
		if len(cs) > 0 {
			out = append(out, cs[0])
		}
	}
	if peer != nil && len(peer.PeerCertificates) > 0 {
		out = append(out, namedCert{role: "server certificate", cert: peer.PeerCertificates[0]})
	}
	return out, errs
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	case d > time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
