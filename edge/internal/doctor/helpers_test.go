package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// setup is the variable part of a test config.
type setup struct {
	broker    string // the broker section's body (indented two spaces)
	collector string // the collector section's body
	topic     string // subscription pattern
	extra     string // more top-level YAML
	admin     string // admin.listen; default a free port nobody listens on
}

// writeConfig writes an edge config for s into a fresh directory and
// returns the file.
func writeConfig(t *testing.T, s setup) string {
	t.Helper()
	dir := t.TempDir()
	if s.broker == "" {
		s.broker = "  url: tcp://127.0.0.1:1"
	}
	if !strings.Contains(s.broker, "client_id") {
		// Tests run in parallel against the shared broker: the same client
		// id would make the broker drop one test's session for another's.
		s.broker += "\n  client_id: doctor-test-" + testenv.RandomID(6)
	}
	if s.collector == "" {
		s.collector = "  url: http://127.0.0.1:1"
	}
	if s.topic == "" {
		s.topic = "doctor/{site}/{sensor}"
	}
	if s.admin == "" {
		s.admin = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	}
	text := fmt.Sprintf("version: 1\nedge_id: e1\ndata_dir: data\nadmin: {listen: %q}\nbroker:\n%s\ncollector:\n%s\nsubscriptions:\n  - topic: %s\n    profile: generic_4_20ma\n%s",
		s.admin, s.broker, s.collector, s.topic, s.extra)
	file := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func runDoctor(t *testing.T, file string, timeout time.Duration) Report {
	t.Helper()
	rep := Run(context.Background(), Options{ConfigFile: file, Timeout: timeout, Version: "test", Getenv: func(string) string { return "" }})
	// The technician's promise: every failure says what to do.
	for _, r := range rep.Results {
		if (r.Status == Fail || r.Status == Warn) && r.Hint == "" {
			t.Errorf("%s %s without a hint: %s", r.Name, r.Status, r.Detail)
		}
		if r.Detail == "" {
			t.Errorf("%s %s without a detail", r.Name, r.Status)
		}
	}
	return rep
}

// get returns the named result, failing the test when it is missing.
func get(t *testing.T, rep Report, name string) Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no %q result in %s", name, dump(rep))
	return Result{}
}

func dump(rep Report) string {
	var b strings.Builder
	_ = rep.WriteText(&b)
	return b.String()
}

// want is the expectation on one result: its status, and substrings of
// its detail and hint.
type want struct {
	name   string
	status Status
	detail []string
	hint   []string
}

func check(t *testing.T, rep Report, ws ...want) {
	t.Helper()
	for _, w := range ws {
		r := get(t, rep, w.name)
		if r.Status != w.status {
			t.Errorf("%s: status %s, want %s\n%s", w.name, r.Status, w.status, dump(rep))
			continue
		}
		for _, s := range w.detail {
			if !strings.Contains(r.Detail, s) {
				t.Errorf("%s: detail %q lacks %q", w.name, r.Detail, s)
			}
		}
		for _, s := range w.hint {
			if !strings.Contains(r.Hint, s) {
				t.Errorf("%s: hint %q lacks %q (detail %q)", w.name, r.Hint, s, r.Detail)
			}
		}
	}
}

// pki is a test CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files into dir.
type pki struct {
	dir                   string
	ca, server, serverKey string
	client, clientKey     string
	caCert                *testenv.Cert
}

// newPKI writes a CA valid for a year, a server certificate valid for
// serverLife (negative: already expired) and a client certificate valid
// for clientLife. The files are world-readable: Mosquitto started as root
// drops privileges and must read the server key.
func newPKI(t *testing.T, serverLife, clientLife time.Duration) *pki {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := &pki{dir: dir, ca: filepath.Join(dir, "ca.pem"), server: filepath.Join(dir, "server.pem"), serverKey: filepath.Join(dir, "server-key.pem"),
		client: filepath.Join(dir, "client.pem"), clientKey: filepath.Join(dir, "client-key.pem")}
	p.caCert = testenv.NewCA(t, "doctor test CA")
	p.caCert.WriteCert(t, p.ca)
	p.issue(t, "server", p.server, p.serverKey, serverLife, false)
	p.issue(t, "client", p.client, p.clientKey, clientLife, true)
	return p
}

func (p *pki) issue(t *testing.T, cn, certFile, keyFile string, life time.Duration, client bool) {
	t.Helper()
	p.caCert.Issue(t, cn, testenv.CertOptions{Client: client, Life: life}).WriteFiles(t, certFile, keyFile)
}
