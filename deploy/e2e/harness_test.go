//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// binaries are the paths of the two programs under test.
type binaries struct{ edge, collector string }

// findBinaries returns bin/sm-edge and bin/sm-collector of the repository
// (built by `make build`), or builds them into a temporary directory when
// either is missing.
func findBinaries(t *testing.T) binaries {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b := binaries{edge: filepath.Join(root, "bin", "sm-edge"), collector: filepath.Join(root, "bin", "sm-collector")}
	_, e1 := os.Stat(b.edge)
	_, e2 := os.Stat(b.collector)
	if e1 == nil && e2 == nil {
		return b
	}
	dir := t.TempDir()
	b = binaries{edge: filepath.Join(dir, "sm-edge"), collector: filepath.Join(dir, "sm-collector")}
	for out, pkg := range map[string]string{b.edge: "./edge/cmd/sm-edge", b.collector: "./collector/cmd/sm-collector"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, o)
		}
	}
	t.Logf("bin/ was incomplete: built the binaries into %s", dir)
	return b
}

// collector is sm-collector serving one scenario's database.
type collector struct {
	p      *testenv.Process
	base   string
	token  string // the edge's token
	apiKey string // a viewer key
	dbURL  string
}

// startCollector migrates dbURL, registers edgeID, creates a viewer key,
// adds the latency probe column (see addLatencyProbe) and starts serve
// with the base configuration plus extra YAML.
func startCollector(t *testing.T, dir, bin, dbURL, edgeID, extra string) *collector {
	t.Helper()
	env := []string{"DATABASE_URL=" + dbURL, "SM_COLLECTOR_DATABASE_TIMESCALE=off"}
	testenv.RunProgram(t, bin, env, "migrate")
	addLatencyProbe(t, dbURL)
	c := &collector{dbURL: dbURL}
	c.token = strings.TrimSpace(testenv.RunProgram(t, bin, env, "edge", "register", "--name", edgeID))
	c.apiKey = strings.TrimSpace(testenv.RunProgram(t, bin, env, "apikey", "create", "--name", "e2e", "--role", "viewer"))
	port := testenv.FreePort(t)
	c.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`version: 1
listen: 127.0.0.1:%d
shutdown_timeout: 10s
log: {level: info, format: text}
database: {timescale: "off", max_conns: 12}
rate_limits: {edge: {per_second: 0}}
ingest: {retry_after: 1s, write_timeout: 10s}
%s`, port, extra)
	cfgPath := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.p = testenv.NewProcess(t, dir, "sm-collector", bin, env, "serve", "--config", cfgPath)
	c.start(t)
	return c
}

func (c *collector) start(t *testing.T) {
	t.Helper()
	c.p.Start()
	testenv.WaitFor(t, 30*time.Second, "sm-collector /readyz", func() bool {
		if c.p.Exited() {
			t.Fatalf("sm-collector exited:\n%s", testenv.Tail(c.p.LogPath, 30))
		}
		return testenv.Ready(c.base + "/readyz")
	})
}

// edge is sm-edge with its configuration and data directory.
type edge struct {
	p     *testenv.Process
	admin string
	id    string
	// tokenFile is the admin token sm-edge generates in its data
	// directory on first start (no admin.token_file is configured).
	tokenFile string
}

// edgeOptions are the per-scenario settings of the edge configuration.
type edgeOptions struct {
	id        string
	broker    string
	collector string
	tokenFile string
	maxBytes  int64  // buffer.max_bytes; 0 for 256 MiB
	detector  string // scoring.detector; "" for stuck (quiet on noisy signals)
}

func startEdge(t *testing.T, dir, bin string, o edgeOptions) *edge {
	t.Helper()
	if o.maxBytes == 0 {
		o.maxBytes = 256 << 20
	}
	if o.detector == "" {
		o.detector = "stuck"
	}
	port := testenv.FreePort(t)
	dataDir := filepath.Join(dir, "edge-data")
	cfg := fmt.Sprintf(`version: 1
edge_id: %s
data_dir: %s
admin: {listen: "127.0.0.1:%d"}
log: {level: info, format: text}
broker:
  url: %s
  client_id: sm-edge-%s
  keep_alive: 5s
  reconnect: {initial: 100ms, max: 1s}
subscriptions:
  - topic: smm/{site}/{line}/{asset}/{sensor}
    qos: 1
    format: json
    json: {value: v, timestamp: ts, time_unit: us}
    profile: generic_4_20ma
scoring: {detector: %s}
buffer: {max_bytes: %d}
collector:
  url: %s
  token_file: %s
  batch_delay: 100ms
  status_interval: 2s
  timeout: 15s
  backoff: {initial: 100ms, max: 1s, max_retry_after: 2s}
`, o.id, dataDir, port, o.broker, o.id, o.detector, o.maxBytes, o.collector, o.tokenFile)
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &edge{admin: fmt.Sprintf("127.0.0.1:%d", port), id: o.id, tokenFile: filepath.Join(dataDir, "admin.token")}
	e.p = testenv.NewProcess(t, dir, "sm-edge", bin, nil, "run", "--config", cfgPath)
	e.start(t)
	return e
}

// start starts sm-edge and waits until it is subscribed (/readyz).
func (e *edge) start(t *testing.T) {
	t.Helper()
	e.p.Start()
	testenv.WaitFor(t, 30*time.Second, "sm-edge /readyz", func() bool {
		if e.p.Exited() {
			t.Fatalf("sm-edge exited:\n%s", testenv.Tail(e.p.LogPath, 30))
		}
		return testenv.Ready("http://" + e.admin + "/readyz")
	})
	// /status needs the generated token: without it the answer is 401.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if code, _, err := testenv.HTTPGet(ctx, "http://"+e.admin+"/status", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("sm-edge /status without the admin token = %d, %v; want 401", code, err)
	}
}

// status returns the edge's /status document.
func (e *edge) status() map[string]any {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	token, err := os.ReadFile(e.tokenFile)
	if err != nil {
		return nil
	}
	code, b, err := testenv.HTTPGet(ctx, "http://"+e.admin+"/status", strings.TrimSpace(string(token)))
	if err != nil || code != http.StatusOK {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// addLatencyProbe adds a column to readings that records when each row
// was written (clock_timestamp(), inside the transaction that commits it),
// so publish→stored latency is measured per reading. It is test
// instrumentation only: the collector's column lists name their columns,
// so the extra column takes its default.
func addLatencyProbe(t *testing.T, dbURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER TABLE readings ADD COLUMN e2e_written_at timestamptz NOT NULL DEFAULT clock_timestamp()`); err != nil {
		t.Fatalf("add latency probe column: %v", err)
	}
}

// queueStats returns the edge's queue statistics from /status, or nil.
func (e *edge) queueStats() map[string]any {
	st := e.status()
	if st == nil {
		return nil
	}
	q, _ := st["queue"].(map[string]any)
	return q
}

// backlog is the number of records in the edge's queue, or -1 when the
// edge does not answer.
func (e *edge) backlog() int64 {
	q := e.queueStats()
	if q == nil {
		return -1
	}
	n, ok := q["records"].(float64)
	if !ok {
		return -1
	}
	return int64(n)
}

// drops is the edge's count of shed records since it started.
func (e *edge) drops() uint64 {
	q := e.queueStats()
	if q == nil {
		return 0
	}
	var n uint64
	d, _ := q["drops"].(map[string]any)
	for _, v := range d {
		if f, ok := v.(float64); ok {
			n += uint64(f)
		}
	}
	return n
}
