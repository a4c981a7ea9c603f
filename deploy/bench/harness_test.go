//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// binaries are the paths of the two programs under test.
type binaries struct{ edge, collector string }

// findBinaries returns sm-edge and sm-collector from BENCH_BIN (a
// directory, e.g. unstripped builds for perf) or bin/ of the repository
// (built by `make build`, stripped and static as shipped), or builds them
// the same way into a temporary directory when either is missing.
func findBinaries(t *testing.T, root string) binaries {
	t.Helper()
	dir := filepath.Join(root, "bin")
	if d := os.Getenv("BENCH_BIN"); d != "" {
		dir = d
	}
	b := binaries{edge: filepath.Join(dir, "sm-edge"), collector: filepath.Join(dir, "sm-collector")}
	_, e1 := os.Stat(b.edge)
	_, e2 := os.Stat(b.collector)
	if e1 == nil && e2 == nil {
		return b
	}
	dir = t.TempDir()
	b = binaries{edge: filepath.Join(dir, "sm-edge"), collector: filepath.Join(dir, "sm-collector")}
	for out, pkg := range map[string]string{b.edge: "./edge/cmd/sm-edge", b.collector: "./collector/cmd/sm-collector"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, o)
		}
	}
	t.Logf("bin/ was incomplete: built the binaries into %s", dir)
	return b
}

// mem is a process's memory from /proc/PID/status, in bytes.
type mem struct {
	hwm, rss int64 // VmHWM (peak resident), VmRSS
	anon     int64 // RssAnon: heap, stacks (not the queue file's mapped pages)
	file     int64 // RssFile: mapped files (bbolt maps its file) and the binary
}

func (m mem) String() string {
	return fmt.Sprintf("peak %s; now %s = %s anon + %s file", mib(m.hwm), mib(m.rss), mib(m.anon), mib(m.file))
}

// memoryOf returns the memory of a running process.
func memoryOf(p *testenv.Process) (m mem) {
	pid := p.PID()
	if pid == 0 {
		return m
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			m.hwm = kb << 10
		case "VmRSS:":
			m.rss = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		case "RssFile:":
			m.file = kb << 10
		}
	}
	return m
}

// metric sums the samples of a Prometheus metric in a text exposition
// whose labels contain filter ("" for all); -1 when the page is unreadable.
func metric(url, name, filter string) float64 { return metricAuth(url, "", name, filter) }

// metricAuth is metric for a page that needs a bearer token (sm-edge's
// admin endpoint; -1 also when the token is refused).
func metricAuth(url, bearer, name, filter string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	code, b, err := testenv.HTTPGet(ctx, url, bearer)
	if err != nil || code != http.StatusOK {
		return -1
	}
	var sum float64
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if filter != "" && !strings.Contains(rest, filter) {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// collector is sm-collector serving one stage's database.
type collector struct {
	p       *testenv.Process
	base    string
	metrics string // URL of /metrics, served without credentials on its own port
	dbURL   string
	env     []string
	bin     string
}

// startCollector migrates a fresh database, adds the latency probe column
// and starts serve.
func startCollector(t *testing.T, dir, bin string) *collector {
	t.Helper()
	dbURL := testenv.Postgres(t)
	env := []string{"DATABASE_URL=" + dbURL, "SM_COLLECTOR_DATABASE_TIMESCALE=off"}
	testenv.RunProgram(t, bin, env, "migrate")
	addLatencyProbe(t, dbURL)
	c := &collector{dbURL: dbURL, env: env, bin: bin}
	port, mport := testenv.FreePort(t), testenv.FreePort(t)
	c.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	c.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	cfg := fmt.Sprintf(`version: 1
listen: 127.0.0.1:%d
metrics: {listen: "127.0.0.1:%d"}
shutdown_timeout: 10s
log: {level: warn, format: text}
database: {timescale: "off", max_conns: 12}
rate_limits: {edge: {per_second: 0}}
ingest: {retry_after: 1s, write_timeout: 10s}
`, port, mport)
	cfgPath := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.p = testenv.NewProcess(t, dir, "sm-collector", bin, env, "serve", "--config", cfgPath)
	c.start(t)
	return c
}

// register registers an edge and returns its token.
func (c *collector) register(t *testing.T, id string) string {
	t.Helper()
	return strings.TrimSpace(testenv.RunProgram(t, c.bin, c.env, "edge", "register", "--name", id))
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

// addLatencyProbe adds a column to readings recording when each row was
// written (clock_timestamp() inside the committing transaction), as
// deploy/e2e does; the collector names its columns, so it takes the
// default.
func addLatencyProbe(t *testing.T, dbURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER TABLE readings ADD COLUMN bench_written_at timestamptz NOT NULL DEFAULT clock_timestamp()`); err != nil {
		t.Fatalf("add latency probe column: %v", err)
	}
}

// edge is sm-edge with its configuration and data directory.
type edge struct {
	p     *testenv.Process
	admin string
	token string // admin token (admin.token_file) for /metrics and /status
}

// metric is metric on the edge's /metrics page, with its admin token.
func (e *edge) metric(name, filter string) float64 {
	return metricAuth(e.admin+"/metrics", e.token, name, filter)
}

// startEdge writes the edge configuration (one-reading and batched JSON
// subscriptions, default scoring ensemble, a 4 GiB queue budget) and
// starts it; it returns the edge and the time from process start to
// /readyz.
func startEdge(t *testing.T, dir, bin, broker, collectorURL, tokenFile string) (*edge, time.Duration) {
	t.Helper()
	port := testenv.FreePort(t)
	adminToken := "bench-admin-" + testenv.RandomID(8)
	adminTokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(adminTokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version: 1
edge_id: bench
data_dir: %s
admin: {listen: "127.0.0.1:%d", token_file: %s}
log: {level: warn, format: text}
broker:
  url: %s
  client_id: sm-edge-bench
  keep_alive: 5s
  reconnect: {initial: 100ms, max: 1s}
subscriptions:
  - topic: smm/{site}/{line}/{asset}/{sensor}
    qos: 1
    format: json
    json: {value: v, timestamp: ts, time_unit: us}
    profile: generic_4_20ma
  - topic: smb/{site}/{line}/{asset}
    qos: 1
    format: json
    json: {items: items, sensor: s, value: v, timestamp: ts, time_unit: us}
    profile: generic_4_20ma
buffer: {max_bytes: %d}
collector:
  url: %s
  token_file: %s
  batch_delay: 100ms
  status_interval: 2s
  timeout: 15s
  backoff: {initial: 100ms, max: 1s, max_retry_after: 2s}
`, filepath.Join(dir, "edge-data"), port, adminTokenFile, broker, int64(4)<<30, collectorURL, tokenFile)
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &edge{admin: fmt.Sprintf("http://127.0.0.1:%d", port), token: adminToken}
	e.p = testenv.NewProcess(t, dir, "sm-edge", bin, nil, "run", "--config", cfgPath)
	return e, e.start(t)
}

// start starts sm-edge and returns the time until /readyz answered 200.
func (e *edge) start(t *testing.T) time.Duration {
	t.Helper()
	e.p.Start()
	if !testenv.Poll(30*time.Second, 2*time.Millisecond, func() bool {
		if e.p.Exited() {
			t.Fatalf("sm-edge exited:\n%s", testenv.Tail(e.p.LogPath, 30))
		}
		return testenv.Ready(e.admin + "/readyz")
	}) {
		t.Fatalf("sm-edge not ready within 30s:\n%s", testenv.Tail(e.p.LogPath, 30))
	}
	return time.Since(e.p.Started())
}

// committed is the number of records the edge committed to its durable
// queue since it started.
func (e *edge) committed() float64 {
	return e.metric("smartmaint_edge_buffer_appends_total", "")
}

// forwarded is the number of records the collector accepted (or
// recognised as duplicates) since the edge started.
func (e *edge) forwarded() float64 {
	return e.metric("smartmaint_edge_forward_records_total", `result="accepted"`) +
		max(0, e.metric("smartmaint_edge_forward_records_total", `result="duplicate"`))
}

// startStack starts what the end-to-end stages share: a private broker, a
// collector, and an sm-edge registered with the collector, subscribed to
// the broker and forwarding into the collector. The caller stops the
// processes when its stage ends (a stage may run several stacks in turn).
func startStack(t *testing.T, bins binaries) (*testenv.Mosquitto, *collector, *edge) {
	dir := t.TempDir()
	broker := testenv.StartMosquitto(t, "")
	coll := startCollector(t, dir, bins.collector)
	e, _ := startEdge(t, dir, bins.edge, broker.URL, coll.base, writeToken(t, dir, coll.register(t, "bench")))
	return broker, coll, e
}

// writeToken writes a token file for the edge.
func writeToken(t *testing.T, dir, token string) string {
	t.Helper()
	f := filepath.Join(dir, "edge.token")
	if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
