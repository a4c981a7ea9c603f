package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// buildBinary builds sm-collector into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sm-collector")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/smartmaint/smartmaint/collector/cmd/sm-collector")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// secretLine returns the only line of stdout, failing unless there is
// exactly one.
func secretLine(t *testing.T, r result, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d: %s", what, r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 1 || len(lines[0]) < 20 || strings.ContainsAny(lines[0], " \t") {
		t.Fatalf("%s: stdout is not one secret line: %q", what, r.stdout)
	}
	if strings.Contains(r.stderr, lines[0]) {
		t.Fatalf("%s: the secret also went to stderr", what)
	}
	return lines[0]
}

// TestEndToEnd builds and runs the real binary against the real
// PostgreSQL: migrate, edge register, apikey create, serve, ingest a batch,
// query it, stop gracefully.
func TestEndToEnd(t *testing.T) {
	dsn := testenv.Postgres(t)
	bin := buildBinary(t)
	env := []string{"DATABASE_URL=" + dsn, "SM_COLLECTOR_DATABASE_TIMESCALE=off"}

	for i := range 2 { // migrate is idempotent
		r := run(t, bin, env, "migrate")
		if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "database migrated") {
			t.Fatalf("migrate #%d: exit %d stdout %q stderr %q", i+1, r.code, r.stdout, r.stderr)
		}
	}
	token := secretLine(t, run(t, bin, env, "edge", "register", "--name", "plant1"), "edge register")
	viewer := secretLine(t, run(t, bin, env, "apikey", "create", "--name", "grafana", "--role", "viewer"), "apikey create")
	if r := run(t, bin, env, "apikey", "create", "--name", "x", "--role", "root"); r.code != 1 || r.stdout != "" {
		t.Errorf("bad role: exit %d stdout %q", r.code, r.stdout)
	}
	if r := run(t, bin, env, "edge", "register", "--name", "plant1"); r.code != 1 || r.stdout != "" {
		t.Errorf("duplicate edge: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	r := run(t, bin, env, "apikey", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "grafana") || strings.Contains(r.stdout, viewer) {
		t.Errorf("apikey list: %d %q", r.code, r.stdout)
	}

	port, mport := testenv.FreePort(t), testenv.FreePort(t)
	cfgFile := filepath.Join(t.TempDir(), "collector.yml")
	cfg := fmt.Sprintf("version: 1\nlisten: 127.0.0.1:%d\nshutdown_timeout: 10s\nlog: {level: info, format: json}\nmetrics: {listen: \"127.0.0.1:%d\"}\n", port, mport)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := exec.Command(bin, "serve", "--config", cfgFile)
	serve.Env = append(os.Environ(), env...)
	var logs bytes.Buffer
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	t.Cleanup(func() {
		_ = serve.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	do := func(method, path, secret string, body []byte) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	sensor := "site1/line1/pump1/temp"
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	batch := &wire.Batch{EdgeID: "plant1", BatchID: "e2e-1", FirstSeq: 1, LastSeq: 30, SentAt: time.Now().UnixNano()}
	for i := range 30 {
		batch.Readings = append(batch.Readings, wire.Reading{Sensor: sensor, Time: t0.Add(time.Duration(i) * time.Minute).UnixNano(), Value: 20 + float64(i)/10, Seq: uint64(i + 1)})
	}
	body, err := wire.EncodeBatch(nil, batch)
	if err != nil {
		t.Fatal(err)
	}
	code, b := do("POST", "/api/v1/ingest", token, body)
	var ir wire.IngestResponse
	if err := json.Unmarshal(b, &ir); code != 200 || err != nil || ir.Accepted != 30 || ir.Rejected != 0 {
		t.Fatalf("ingest: %d %s", code, b)
	}
	// The same batch again (an edge retry after a lost answer): the same
	// answer, and no row twice (the query below finds exactly 30).
	code, b = do("POST", "/api/v1/ingest", token, body)
	if err := json.Unmarshal(b, &ir); code != 200 || err != nil || ir.Accepted != 30 || ir.BatchID != "e2e-1" {
		t.Errorf("retried batch: %d %s", code, b)
	}

	code, b = do("GET", "/api/v1/sensors/"+url.PathEscape(sensor)+"/readings?from="+url.QueryEscape(t0.Format(time.RFC3339)), viewer, nil)
	var pts struct {
		Items []struct {
			Time  time.Time `json:"time"`
			Value float64   `json:"value"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &pts); code != 200 || err != nil || len(pts.Items) != 30 || pts.Items[29].Value != 22.9 || !pts.Items[0].Time.Equal(t0) {
		t.Errorf("readings: %d %.300s", code, b)
	}
	if code, b := do("GET", "/api/v1/sensors", "", nil); code != 401 {
		t.Errorf("no credential: %d %s", code, b)
	}
	if code, b := do("POST", "/api/v1/ingest", viewer, body); code != 403 {
		t.Errorf("viewer ingesting: %d %s", code, b)
	}
	// /metrics lives on its own address, without credentials.
	if code, _ := do("GET", "/metrics", viewer, nil); code != 404 {
		t.Errorf("/metrics on the API address: %d, want 404", code)
	}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(mb), `smartmaint_collector_http_requests_total{code="200",route="POST /api/v1/ingest"} 2`) {
		t.Errorf("metrics: %d", resp.StatusCode)
	}

	// Graceful stop on SIGTERM.
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve exit: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	// Logs: structured, with the route and principal, never a secret.
	out := logs.String()
	for _, secret := range []string{token, viewer} {
		if strings.Contains(out, secret) {
			t.Error("a secret appeared in the logs")
		}
	}
	if !strings.Contains(out, `"route":"POST /api/v1/ingest"`) || !strings.Contains(out, `"principal":"edge:plant1"`) {
		t.Errorf("access log lacks route or principal:\n%s", out)
	}
	r = run(t, bin, env, "edge", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "plant1") || strings.Contains(r.stdout, "never") {
		t.Errorf("edge list after ingest: %d %q", r.code, r.stdout)
	}
}
