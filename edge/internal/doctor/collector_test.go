package doctor

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// collector is a real sm-collector process serving a fresh database.
type collector struct {
	url    string
	tokens map[string]string // edge id → token
}

// startCollector builds bin/sm-collector, migrates a fresh database,
// registers the edges and serves on a free port until the test ends; with
// p it serves HTTPS with p's server certificate.
// (Edge packages must not import collector packages, so the real binary
// is run, as an operator would.)
func startCollector(t *testing.T, p *pki, edges ...string) *collector {
	t.Helper()
	dsn := testenv.Postgres(t)
	bin := filepath.Join(t.TempDir(), "sm-collector")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/smartmaint/smartmaint/collector/cmd/sm-collector").CombinedOutput(); err != nil {
		t.Fatalf("go build sm-collector: %v\n%s", err, out)
	}
	env := append(os.Environ(), "DATABASE_URL="+dsn, "SM_COLLECTOR_DATABASE_TIMESCALE=off")
	run := func(args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("sm-collector %v: %v\n%s", args, err, errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	run("migrate")
	c := &collector{tokens: map[string]string{}}
	for _, e := range edges {
		c.tokens[e] = run("edge", "register", "--name", e)
	}
	port, mport := testenv.FreePort(t), testenv.FreePort(t)
	cfgFile := filepath.Join(t.TempDir(), "collector.yml")
	cfg := fmt.Sprintf("version: 1\nlisten: 127.0.0.1:%d\nshutdown_timeout: 5s\nlog: {level: warn, format: json}\nmetrics: {listen: \"127.0.0.1:%d\"}\n", port, mport)
	scheme := "http"
	if p != nil {
		cfg += fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", p.server, p.serverKey)
		scheme = "https"
	}
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := exec.Command(bin, "serve", "--config", cfgFile)
	serve.Env = env
	var logs bytes.Buffer
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = serve.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = serve.Process.Kill()
			<-exited
		}
	})
	c.url = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // readiness probe only
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := probe.Get(c.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tokenFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCollectorRealAuth proves the token against a real sm-collector:
// the edge's own token, a wrong one, another edge's, and unusable token
// files.
func TestCollectorRealAuth(t *testing.T) {
	t.Parallel()
	c := startCollector(t, nil, "e1", "e2")
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		name  string
		token string // token file
		wants []want
	}{
		{"own token", tokenFile(t, c.tokens["e1"]+"\n", 0o600), []want{
			{name: "collector.dns", status: OK},
			{name: "collector.tcp", status: OK},
			{name: "collector.token", status: OK, detail: []string{"not shown"}},
			{name: "collector.auth", status: OK, detail: []string{"accepted the edge's token", "204"}},
			{name: "clock", status: OK, detail: []string{"from its Date header"}},
		}},
		{"world-readable token file", tokenFile(t, c.tokens["e1"], 0o644), []want{
			{name: "collector.token", status: Warn, detail: []string{"mode is 0644"}, hint: []string{"chmod 600"}},
			{name: "collector.auth", status: OK},
		}},
		{"wrong token", tokenFile(t, "smx_"+strings.Repeat("a", 40), 0o600), []want{
			{name: "collector.auth", status: Fail, detail: []string{"token rejected", "401", "unknown or revoked"},
				hint: []string{"re-register the edge with `sm-collector edge register --name e1` and write the token to"}},
			{name: "clock", status: OK},
		}},
		{"another edge's token", tokenFile(t, c.tokens["e2"], 0o600), []want{
			{name: "collector.auth", status: Fail, detail: []string{"token rejected for this edge", "403"}, hint: []string{"belongs to another edge", "sm-collector edge register --name e1"}},
		}},
		{"missing token file", missing, []want{
			{name: "collector.token", status: Fail, detail: []string{missing + " does not exist"}, hint: []string{"sm-collector edge register --name e1", "copy it to " + missing}},
			{name: "collector.auth", status: Skip},
		}},
		{"empty token file", tokenFile(t, "\n", 0o600), []want{
			{name: "collector.token", status: Fail, detail: []string{"is empty"}, hint: []string{"sm-collector edge register --name e1"}},
			{name: "collector.auth", status: Skip},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := writeConfig(t, setup{collector: fmt.Sprintf("  url: %s\n  token_file: %s", c.url, tt.token)})
			rep := runDoctor(t, file, 5*time.Second)
			check(t, rep, tt.wants...)
			for _, tok := range c.tokens {
				if strings.Contains(dump(rep), tok) {
					t.Fatal("the report shows a token")
				}
			}
		})
	}
}

// TestCollectorAnswers explains answers a real collector rarely gives,
// from an httptest server, and measures the clock from them.
func TestCollectorAnswers(t *testing.T) {
	t.Parallel()
	token := tokenFile(t, "tok", 0o600)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wants   []want
	}{
		{"server error", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(500)
			fmt.Fprint(w, `{"title":"internal error","detail":"save status failed"}`)
		}, []want{{name: "collector.auth", status: Fail, detail: []string{"500 Internal Server Error: save status failed"}, hint: []string{"/readyz and logs"}}}},
		{"busy", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(503)
		}, []want{{name: "collector.auth", status: Warn, detail: []string{"busy"}, hint: []string{"retry after 30 s"}}}},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://collector.example.com"+r.URL.Path, http.StatusPermanentRedirect)
		}, []want{{name: "collector.auth", status: Fail, detail: []string{"redirect to https://collector.example.com/api/v1/edges/e1/status"}, hint: []string{"collector.url"}}}},
		{"not found", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) }, []want{
			{name: "collector.auth", status: Fail, detail: []string{"404"}, hint: []string{`edge "e1" is not registered`, "base URL"}}}},
		{"slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, []want{{name: "collector.auth", status: Fail, detail: []string{"no answer within 500ms"}, hint: []string{"overloaded or stuck"}}, {name: "clock", status: Skip}}},
		{"clock far ahead", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Date", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(204)
		}, []want{{name: "collector.auth", status: OK}, {name: "clock", status: Fail, detail: []string{"behind the collector's", "Date header"}, hint: []string{"timedatectl set-ntp true"}}}},
		{"clock a bit behind", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Date", time.Now().Add(-5*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(204)
		}, []want{{name: "clock", status: Warn, detail: []string{"ahead of the collector's"}}}},
		{"server time in the body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"server_time":%q}`, time.Now().Add(1500*time.Millisecond).UTC().Format(time.RFC3339Nano))
		}, []want{{name: "clock", status: OK, detail: []string{"1.5s behind", "server_time"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			file := writeConfig(t, setup{collector: fmt.Sprintf("  url: %s\n  token_file: %s", srv.URL, token)})
			check(t, runDoctor(t, file, 500*time.Millisecond), tt.wants...)
		})
	}
}

// TestCollectorNetwork covers DNS, TCP and TLS to the collector.
func TestCollectorNetwork(t *testing.T) {
	t.Parallel()
	token := tokenFile(t, "tok", 0o600)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		collector string
		wants     []want
	}{
		{"unknown host", "  url: https://no-such-collector.invalid", []want{
			{name: "collector.dns", status: Fail, detail: []string{"cannot resolve no-such-collector.invalid"}, hint: []string{"collector.url"}},
			{name: "collector.auth", status: Skip},
			{name: "clock", status: Skip, detail: []string{"not reachable"}},
		}},
		{"nothing listening", "  url: http://127.0.0.1:1", []want{
			{name: "collector.tcp", status: Fail, detail: []string{"refused"}, hint: []string{"is the collector running"}},
		}},
		{"untrusted certificate", "  url: " + srv.URL, []want{
			{name: "collector.tls", status: Fail, detail: []string{"not a trusted CA"}, hint: []string{"collector.tls.ca_file"}},
			{name: "collector.auth", status: Skip},
		}},
		{"trusted certificate", fmt.Sprintf("  url: %s\n  tls: {ca_file: %s}", srv.URL, ca), []want{
			{name: "collector.tls", status: OK, detail: []string{"verified"}},
			{name: "collector.cert", status: OK, detail: []string{"CA file " + ca, "server certificate"}},
			{name: "collector.auth", status: OK},
		}},
		{"wrong name", fmt.Sprintf("  url: %s\n  tls: {ca_file: %s, server_name: collector.plant.local}", srv.URL, ca), []want{
			{name: "collector.tls", status: Fail, detail: []string{`not for "collector.plant.local"`, "example.com"}, hint: []string{"collector.tls.server_name"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := writeConfig(t, setup{collector: tt.collector + "\n  token_file: " + token})
			check(t, runDoctor(t, file, 2*time.Second), tt.wants...)
		})
	}
}

// TestCollectorRealHTTPS: the real collector serving HTTPS with a
// certificate from the test's CA.
func TestCollectorRealHTTPS(t *testing.T) {
	t.Parallel()
	p := newPKI(t, 20*24*time.Hour, time.Hour)
	c := startCollector(t, p, "e1")
	token := tokenFile(t, c.tokens["e1"], 0o600)
	tests := []struct {
		name  string
		tls   string
		wants []want
	}{
		{"trusted", fmt.Sprintf("  tls: {ca_file: %s}", p.ca), []want{
			{name: "collector.tls", status: OK, detail: []string{`certificate "server" issued by "doctor test CA", verified`}},
			{name: "collector.cert", status: Warn, detail: []string{`server certificate "server" expires in 19 day(s)`}, hint: []string{"collector's certificate must be renewed"}},
			{name: "collector.auth", status: OK},
		}},
		{"system roots only", "", []want{
			{name: "collector.tls", status: Fail, detail: []string{`issued by "doctor test CA", which is not a trusted CA`}, hint: []string{"collector.tls.ca_file"}},
			{name: "collector.auth", status: Skip},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := writeConfig(t, setup{collector: fmt.Sprintf("  url: %s\n  token_file: %s\n%s", c.url, token, tt.tls)})
			check(t, runDoctor(t, file, 5*time.Second), tt.wants...)
		})
	}
}
