package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"time"
)

// SMTP TLS modes (EmailSender.TLS).
const (
	TLSStartTLS = "starttls" // plain connection upgraded with STARTTLS; refused if the server lacks it
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
	TLSNone     = "none"     // no TLS: only for a relay on localhost
)

// EmailSender sends a plain-text e-mail per message over SMTP.
//
// It uses the standard library's net/smtp: it speaks ESMTP with STARTTLS
// and PLAIN auth, which is all a relay needs, adds no dependency, and
// PlainAuth refuses to send the password over an unencrypted connection
// to anything but localhost. The package is frozen, not deprecated.
type EmailSender struct {
	Host     string
	Port     int
	Username string
	Password string // secret
	From     string
	To       []string
	TLS      string
	// TLSConfig adds trusted CAs; ServerName is set to Host.
	TLSConfig *tls.Config
	// LocalName is sent in EHLO ("localhost" when empty).
	LocalName string
	Now       func() time.Time
}

// Send implements Sender.
func (s *EmailSender) Send(ctx context.Context, m *Message) error {
	port := s.Port
	if port == 0 {
		port = 587
		if s.TLS == TLSImplicit {
			port = 465
		}
	}
	addr := net.JoinHostPort(s.Host, strconv.Itoa(port))
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLSConfig != nil {
		tc = s.TLSConfig.Clone()
	}
	tc.ServerName = s.Host
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot connect to SMTP server %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if s.TLS == TLSImplicit {
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS with SMTP server %s: %w", addr, err)
		}
		conn = tconn
	}
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		return fmt.Errorf("SMTP greeting from %s: %w", addr, err)
	}
	defer c.Close()
	local := s.LocalName
	if local == "" {
		local = "localhost"
	}
	if err := c.Hello(local); err != nil {
		return fmt.Errorf("SMTP EHLO: %w", err)
	}
	if s.TLS == "" || s.TLS == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("%w: SMTP server %s does not offer STARTTLS", ErrPermanent, addr)
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("SMTP STARTTLS: %w", err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			// The server's reply, never the password.
			return fmt.Errorf("%w: SMTP auth as %q: %v", ErrPermanent, s.Username, err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return smtpErr("MAIL FROM", err)
	}
	for _, to := range s.To {
		if err := c.Rcpt(to); err != nil {
			return smtpErr("RCPT TO "+to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpErr("DATA", err)
	}
	if _, err := w.Write(s.compose(m)); err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return smtpErr("end of DATA", err)
	}
	// The server took the message at the end of DATA: a failed QUIT must
	// not cause a second e-mail.
	_ = c.Quit()
	return nil
}

// smtpErr marks 5xx replies permanent; 4xx and I/O errors are retried.
func smtpErr(stage string, err error) error {
	var te interface{ Temporary() bool }
	msg := err.Error()
	if len(msg) >= 3 && msg[0] == '5' && !errors.As(err, &te) {
		return fmt.Errorf("%w: SMTP %s: %v", ErrPermanent, stage, err)
	}
	return fmt.Errorf("SMTP %s: %w", stage, err)
}

// headerSafe removes CR and LF so a value cannot add header lines.
func headerSafe(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// compose builds the RFC 5322 message. Message-ID is derived from the
// idempotency key, so a redelivered e-mail has the same Message-ID and
// mail clients and archives can drop it.
func (s *EmailSender) compose(m *Message) []byte {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var b strings.Builder
	hdr := func(k, v string) { b.WriteString(k + ": " + headerSafe(v) + "\r\n") }
	hdr("From", s.From)
	hdr("To", strings.Join(s.To, ", "))
	hdr("Subject", m.Title())
	hdr("Date", now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+m.Key+"@smartmaint>")
	hdr("X-Smartmaint-Idempotency-Key", m.Key)
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	for _, line := range strings.Split(m.Text(), "\n") {
		b.WriteString(strings.TrimRight(line, "\r") + "\r\n")
	}
	return []byte(b.String())
}
