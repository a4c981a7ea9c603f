package doctor

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestConfig: problems are reported like `sm-edge config validate`
// (FILE:LINE: field: message), every one of them; an unreadable file
// skips everything else.
func TestConfig(t *testing.T) {
	t.Parallel()
	good := writeConfig(t, setup{})
	bad := writeConfig(t, setup{broker: "  url: tcp://127.0.0.1:1\n  workers: 0", extra: "log: {level: loud}\n"})
	tests := []struct {
		name  string
		file  string
		wants []want
	}{
		{"valid", good, []want{{name: "config", status: OK, detail: []string{good + ": valid (edge e1, 1 subscription(s)"}}}},
		{"problems", bad, []want{
			{name: "config", status: Fail, detail: []string{"2 problem(s)", bad + ":7: broker.workers: must be 1–256 (got 0)", bad + ":14: log.level: must be debug, info, warn or error"},
				hint: []string{"sm-edge config validate --config " + bad}},
			// The rest still runs.
			{name: "broker.tcp", status: Fail},
		}},
		{"missing file", "/nonexistent/edge.yaml", []want{
			{name: "config", status: Fail, detail: []string{"cannot read config", "no such file"}},
			{name: "broker", status: Skip, detail: []string{"config could not be read"}},
			{name: "admin", status: Skip},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			check(t, runDoctor(t, tt.file, time.Second), tt.wants...)
		})
	}
}

func TestReportOutput(t *testing.T) {
	t.Parallel()
	rep := Report{Config: "edge.yaml", Results: []Result{
		{Name: "config", Status: OK, Detail: "edge.yaml: valid"},
		{Name: "broker.tcp", Status: Fail, Detail: "connection refused", Hint: "start the broker"},
		{Name: "clock", Status: Warn, Detail: "3s behind\nsecond line", Hint: "enable NTP"},
		{Name: "models", Status: Skip, Detail: "none"},
	}}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	wantText := `✓ config      edge.yaml: valid
✗ broker.tcp  connection refused
              → start the broker
! clock       3s behind
              second line
              → enable NTP
- models      none

4 check(s): 1 failed, 1 warning(s)
`
	if diff := cmp.Diff(wantText, b.String()); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Config   string   `json:"config"`
		Results  []Result `json:"results"`
		Failed   int      `json:"failed"`
		Warnings int      `json:"warnings"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep.Results, got.Results); diff != "" || got.Failed != 1 || got.Warnings != 1 || got.Config != "edge.yaml" {
		t.Errorf("json: failed %d warnings %d config %q, results (-want +got):\n%s", got.Failed, got.Warnings, got.Config, diff)
	}
}

// TestCertExpiry judges certificate files by their dates.
func TestCertExpiry(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name       string
		clientLife time.Duration
		want       Status
		detail     string
	}{
		{"valid", 200 * 24 * time.Hour, OK, "valid until"},
		{"expires soon", 12 * 24 * time.Hour, Warn, "expires in 12 day(s)"},
		{"expired", -time.Hour, Fail, "EXPIRED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPKI(t, time.Hour, tt.clientLife)
			certs, errs := certsOf(p.ca, p.client, nil)
			if len(errs) > 0 || len(certs) != 2 {
				t.Fatalf("certsOf: %d certs, errors %v", len(certs), errs)
			}
			r := checkCerts("broker.cert", "broker", "broker.tls", certs, now)
			if r.Status != tt.want || !strings.Contains(r.Detail, tt.detail) {
				t.Errorf("got %s %q, want %s with %q", r.Status, r.Detail, tt.want, tt.detail)
			}
			if tt.want != OK && !strings.Contains(r.Hint, "replace "+p.client) {
				t.Errorf("hint %q does not say which file to replace", r.Hint)
			}
		})
	}
	// A file without certificates is an error, not a pass.
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs := certsOf(junk, "", nil); len(errs) != 1 || !strings.Contains(errs[0], "holds no PEM certificate") {
		t.Errorf("junk CA file: %v", errs)
	}
}

// clockCases seed the fuzz test of the collector answer parsers.
var clockCases = []struct {
	date string
	body string
}{
	{"", `{"server_time":"2026-11-26T12:00:00.5Z"}`},
	{"Thu, 26 Nov 2026 12:00:00 GMT", ""},
	{"garbage", `{"type":"urn:x","title":"t","detail":"d"}`},
	{"", `not json`},
}

func FuzzCollectorAnswer(f *testing.F) {
	for _, c := range clockCases {
		f.Add(c.date, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, date string, body []byte) {
		resp := &http.Response{Header: http.Header{}}
		resp.Header.Set("Date", date)
		now := time.Now()
		s := clockFromAnswer(resp, body, now, now.Add(time.Millisecond))
		if s.known && s.uncertainty < 0 {
			t.Fatalf("negative uncertainty %v", s.uncertainty)
		}
		if d := problemDetail(body); len(d) > 204 {
			t.Fatalf("detail of %d bytes", len(d))
		}
	})
}
