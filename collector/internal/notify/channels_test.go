package notify

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/collector/internal/alert"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that
// trusts its CA.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca := testenv.NewCA(t, "smtp-test CA")
	return ca.Issue(t, "smtp-test", testenv.CertOptions{}).TLS(), ca.Pool()
}

// smtpServer is a small but real SMTP server (RFC 5321 subset): EHLO,
// STARTTLS, AUTH PLAIN (only after TLS), MAIL, RCPT, DATA, QUIT.
type smtpServer struct {
	addr     string
	cert     tls.Certificate
	noTLS    bool // do not offer STARTTLS
	user     string
	pass     string
	mu       sync.Mutex
	mails    []mail
	authSeen []string // AUTH lines received, and whether over TLS
}

type mail struct {
	from string
	to   []string
	data string
	tls  bool
	user string
}

func startSMTP(t *testing.T, s *smtpServer) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	say := func(line string) { w.WriteString(line + "\r\n"); w.Flush() }
	say("220 127.0.0.1 ESMTP test")
	var m mail
	secure, authed := false, ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO", "HELO":
			lines := []string{"250-127.0.0.1", "250-8BITMIME"}
			if !secure && !s.noTLS {
				lines = append(lines, "250-STARTTLS")
			}
			if secure {
				lines = append(lines, "250-AUTH PLAIN")
			}
			lines = append(lines, "250 SMTPUTF8")
			for _, l := range lines {
				w.WriteString(l + "\r\n")
			}
			w.Flush()
		case "STARTTLS":
			say("220 ready to start TLS")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.cert}})
			if err := tc.Handshake(); err != nil {
				return
			}
			c, secure = tc, true
			r, w = bufio.NewReader(c), bufio.NewWriter(c)
		case "AUTH":
			s.mu.Lock()
			s.authSeen = append(s.authSeen, fmt.Sprintf("tls=%v", secure))
			s.mu.Unlock()
			f := strings.Fields(line)
			if !secure || len(f) != 3 || f[1] != "PLAIN" {
				say("538 encryption required")
				continue
			}
			raw, _ := base64.StdEncoding.DecodeString(f[2])
			parts := strings.Split(string(raw), "\x00")
			if len(parts) != 3 || parts[1] != s.user || parts[2] != s.pass {
				say("535 authentication failed")
				continue
			}
			authed = parts[1]
			say("235 authenticated")
		case "MAIL":
			if s.user != "" && authed == "" {
				say("530 authentication required")
				continue
			}
			m = mail{from: between(line, "<", ">"), tls: secure, user: authed}
			say("250 ok")
		case "RCPT":
			m.to = append(m.to, between(line, "<", ">"))
			say("250 ok")
		case "DATA":
			say("354 end with .")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			m.data = b.String()
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			say("250 queued")
		case "RSET", "NOOP":
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 not implemented")
		}
	}
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(rest, b)
	return v
}

func TestEmailOverSMTP(t *testing.T) {
	cert, pool := selfSigned(t)
	s := &smtpServer{cert: cert, user: "alerts@example.com", pass: "p4ss"}
	startSMTP(t, s)
	host, port, _ := net.SplitHostPort(s.addr)
	var p int
	fmt.Sscan(port, &p)
	snd := &EmailSender{Host: host, Port: p, Username: "alerts@example.com", Password: "p4ss", From: "alerts@example.com",
		To: []string{"oncall@example.com", "planner@example.com"}, TLS: TLSStartTLS, TLSConfig: &tls.Config{RootCAs: pool}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := &Message{Key: "alert-7-70", Channel: "mail", Items: []alert.Notification{*note(7, "critical")}}
	if err := snd.Send(ctx, m); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mails) != 1 {
		t.Fatalf("%d mails", len(s.mails))
	}
	got := s.mails[0]
	if !got.tls || got.user != "alerts@example.com" || got.from != "alerts@example.com" || len(got.to) != 2 {
		t.Errorf("envelope: %+v", got)
	}
	for _, want := range []string{"Subject: [CRITICAL] opened: limit alert on plant1/l1/pump7/temp\r\n",
		"Message-ID: <alert-7-70@smartmaint>\r\n", "X-Smartmaint-Idempotency-Key: alert-7-70\r\n",
		"https://c.example/api/v1/alerts/7", "value 97.5, threshold 90, since 2026-03-01T12:00:00Z"} {
		if !strings.Contains(got.data, want) {
			t.Errorf("mail lacks %q:\n%s", want, got.data)
		}
	}
	for _, a := range s.authSeen {
		if a != "tls=true" {
			t.Errorf("credentials sent without TLS: %v", s.authSeen)
		}
	}
}

// TestEmailRefusesWithoutSTARTTLS: a server that does not offer STARTTLS
// never sees the password, and the failure is permanent.
func TestEmailRefusesWithoutSTARTTLS(t *testing.T) {
	cert, _ := selfSigned(t)
	s := &smtpServer{cert: cert, noTLS: true, user: "u", pass: "p"}
	startSMTP(t, s)
	host, port, _ := net.SplitHostPort(s.addr)
	var p int
	fmt.Sscan(port, &p)
	snd := &EmailSender{Host: host, Port: p, Username: "u", Password: "p", From: "a@x", To: []string{"b@x"}}
	err := snd.Send(context.Background(), &Message{Key: "k", Items: []alert.Notification{*note(1, "minor")}})
	if !errors.Is(err, ErrPermanent) || strings.Contains(err.Error(), "p4ss") {
		t.Errorf("error %v, want a permanent failure", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.authSeen) != 0 || len(s.mails) != 0 {
		t.Errorf("auth %v mails %d", s.authSeen, len(s.mails))
	}
}

// TestAlertmanager starts the real Alertmanager (Debian package
// prometheus-alertmanager) and checks that its API lists the alert, and
// no longer lists it as active once resolved.
func TestAlertmanager(t *testing.T) {
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		if bin, err = exec.LookPath("alertmanager"); err != nil {
			testenv.Missing(t, "prometheus-alertmanager not installed (apt-get install prometheus-alertmanager)")
			return
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "am.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+dir, "--web.listen-address="+addr,
		"--cluster.listen-address=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", out.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	snd := &AlertmanagerSender{URL: base, Client: http.DefaultClient}
	n := note(42, "critical")
	n.Since = time.Now().UTC().Add(-time.Minute)
	ctx := context.Background()
	if err := snd.Send(ctx, &Message{Key: n.Key, Items: []alert.Notification{*n}}); err != nil {
		t.Fatal(err)
	}
	type amListed struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		Status      struct {
			State string `json:"state"`
		} `json:"status"`
	}
	list := func() []amListed {
		resp, err := http.Get(base + "/api/v2/alerts?filter=" + url.QueryEscape(`alert_id="42"`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []amListed
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := list()
	if len(got) != 1 || got[0].Labels["severity"] != "critical" || got[0].Labels["sensor"] != n.Sensor ||
		got[0].Annotations["idempotency_key"] != n.Key || got[0].Annotations["url"] != n.URL {
		t.Fatalf("alertmanager lists %+v", got)
	}
	// Redelivery (at least once) is harmless: still one alert.
	if err := snd.Send(ctx, &Message{Key: n.Key, Items: []alert.Notification{*n}}); err != nil {
		t.Fatal(err)
	}
	if got := list(); len(got) != 1 {
		t.Errorf("after redelivery: %d alerts", len(got))
	}
	r := *n
	r.Transition, r.State, r.At = alert.Resolved, alert.StateResolved, time.Now().UTC()
	if err := snd.Send(ctx, &Message{Key: "alert-42-99", Items: []alert.Notification{r}}); err != nil {
		t.Fatal(err)
	}
	for _, a := range list() {
		if a.Status.State == "active" {
			t.Errorf("resolved alert still active: %+v", a)
		}
	}
}

// TestMQTTPublish publishes through the real broker to a subscriber.
func TestMQTTPublish(t *testing.T) {
	broker, prefix := testenv.MQTT(t)
	if broker == "" {
		return
	}
	got := make(chan paho.Message, 4)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("sub-" + testenv.RandomID(6)))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe(prefix+"/#", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	snd := &MQTTSender{Broker: broker, Topic: prefix + "/{site}/{asset}", QoS: 1, ClientID: "pub-" + testenv.RandomID(6)}
	defer snd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := snd.Send(ctx, &Message{Key: "g", Items: []alert.Notification{*note(3, "major"), *note(4, "minor")}}); err != nil {
		t.Fatal(err)
	}
	topics := map[string]string{}
	for range 2 {
		select {
		case m := <-got:
			var body struct {
				Key          string             `json:"idempotency_key"`
				Notification alert.Notification `json:"notification"`
			}
			if err := json.Unmarshal(m.Payload(), &body); err != nil {
				t.Fatal(err)
			}
			topics[m.Topic()] = body.Key
		case <-ctx.Done():
			t.Fatalf("received %v before timeout", topics)
		}
	}
	want := map[string]string{prefix + "/plant1/pump3": "alert-3-30", prefix + "/plant1/pump4": "alert-4-40"}
	if fmt.Sprint(topics) != fmt.Sprint(want) {
		t.Errorf("published %v, want %v", topics, want)
	}
}

// TestSlack posts to an httptest stand-in for Slack's incoming webhook and
// checks the text and blocks.
func TestSlack(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil || r.Header.Get(HeaderIdempotency) != "alert-5-50" {
			http.Error(w, "bad", 400)
		}
	}))
	defer srv.Close()
	snd := &SlackSender{URL: srv.URL + "/services/T000/B000/SECRET", Client: srv.Client()}
	if err := snd.Send(context.Background(), &Message{Key: "alert-5-50", Items: []alert.Notification{*note(5, "critical")}}); err != nil {
		t.Fatal(err)
	}
	text, _ := got["text"].(string)
	blocks, _ := got["blocks"].([]any)
	if !strings.Contains(text, "[CRITICAL] opened: limit alert on plant1/l1/pump5/temp") || len(blocks) != 3 {
		t.Errorf("slack payload: %v", got)
	}
	// A failure never shows the URL (a credential).
	srv.Close()
	err := snd.Send(context.Background(), &Message{Key: "k", Items: []alert.Notification{*note(5, "critical")}})
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %v", err)
	}
}
