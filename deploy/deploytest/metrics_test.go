package deploytest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// TestMetricNamesExported checks that every metric the alert rules and
// the dashboard use is exported by the binary its prefix names: first by
// scraping the running programs after some traffic, else (for families
// that have no sample until their code path runs) by finding the quoted
// name in that binary's source.
func TestMetricNamesExported(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	dbURL := testenv.Postgres(t)
	broker, prefix := testenv.MQTT(t)

	// What the operations files use, and where.
	used := map[string][]string{} // metric name → files
	rulesPath := filepath.Join(root, "deploy", "prometheus", "alerts.yml")
	for _, r := range loadRules(t, rulesPath) {
		names := metricNames(r.Expr)
		// Annotations embed queries in templates; only the project's
		// names can be told apart from prose there.
		for _, a := range r.Annotations {
			names = append(names, projectMetric.FindAllString(a, -1)...)
		}
		for _, n := range names {
			used[n] = appendOnce(used[n], "alerts.yml")
		}
	}
	dashPath := filepath.Join(root, "deploy", "grafana", "smartmaint.json")
	d := loadDashboard(t, dashPath)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, n := range metricNames(tg.Expr) {
				used[n] = appendOnce(used[n], "smartmaint.json")
			}
		}
	}
	// The dashboard's variables query metrics too.
	raw, err := os.ReadFile(dashPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range projectMetric.FindAllString(string(raw), -1) {
		used[n] = appendOnce(used[n], "smartmaint.json")
	}
	if len(used) == 0 {
		t.Fatal("no metric names found in alerts.yml and smartmaint.json")
	}

	edgeTypes, collTypes := runAndScrape(t, root, dbURL, broker, prefix)

	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	slices.Sort(names)
	var report strings.Builder
	var scraped, fromSource int
	for _, n := range names {
		files := strings.Join(used[n], ", ")
		var types map[string]string
		var srcDir, bin string
		switch {
		case slices.Contains(foreignMetrics, n):
			fmt.Fprintf(&report, "  %-58s Prometheus's own scrape metric\n", n)
			continue
		case strings.HasPrefix(n, "smartmaint_edge_"):
			types, srcDir, bin = edgeTypes, filepath.Join(root, "edge"), "sm-edge"
		case strings.HasPrefix(n, "smartmaint_collector_"):
			types, srcDir, bin = collTypes, filepath.Join(root, "collector"), "sm-collector"
		default:
			// A runtime metric (go_*, process_*) both binaries export.
			if fam, ok := family(n, edgeTypes); ok {
				if _, ok := family(n, collTypes); ok {
					scraped++
					fmt.Fprintf(&report, "  %-58s scraped from both binaries (%s %s)\n", n, edgeTypes[fam], fam)
					continue
				}
			}
			t.Errorf("%s (used in %s) is not a smartmaint_edge_* or smartmaint_collector_* metric, not exported by both binaries and not Prometheus's own", n, files)
			continue
		}
		if fam, ok := family(n, types); ok {
			scraped++
			fmt.Fprintf(&report, "  %-58s scraped from %s (%s %s)\n", n, bin, types[fam], fam)
			continue
		}
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suf); ok {
				base = b
				break
			}
		}
		if f := sourceDefines(t, srcDir, base); f != "" {
			fromSource++
			rel, _ := filepath.Rel(root, f)
			fmt.Fprintf(&report, "  %-58s no sample yet; defined in %s\n", n, rel)
			continue
		}
		t.Errorf("%s (used in %s) is not exported by %s: not on its /metrics page and not defined in %s", n, files, bin, srcDir)
	}
	t.Logf("%d metric names used: %d scraped, %d found in source only\n%s", len(names), scraped, fromSource, report.String())
}

func appendOnce(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// runAndScrape builds and starts sm-collector and sm-edge, publishes a few
// seconds of simulated plant data through the edge into the collector,
// and returns the metric families of both /metrics pages.
func runAndScrape(t *testing.T, root, dbURL, broker, prefix string) (edgeTypes, collTypes map[string]string) {
	t.Helper()
	dir := t.TempDir()
	edgeBin, collBin := buildBinaries(t, root)

	env := []string{"DATABASE_URL=" + dbURL, "SM_COLLECTOR_DATABASE_TIMESCALE=off"}
	testenv.RunProgram(t, collBin, env, "migrate")
	edgeID := "deploytest-" + testenv.RandomID(3)
	token := strings.TrimSpace(testenv.RunProgram(t, collBin, env, "edge", "register", "--name", edgeID))
	tokenFile := filepath.Join(dir, "edge.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	apiPort, metricsPort, adminPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	collCfg := filepath.Join(dir, "collector.yaml")
	writeFile(t, collCfg, fmt.Sprintf(`version: 1
listen: 127.0.0.1:%d
metrics: {listen: "127.0.0.1:%d"}
log: {level: info, format: text}
database: {timescale: "off"}
rate_limits: {edge: {per_second: 0}}
`, apiPort, metricsPort))
	start(t, dir, "sm-collector", collBin, env, "serve", "--config", collCfg)
	collBase := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	if !waitFor(30*time.Second, func() bool { return httpOK(collBase + "/readyz") }) {
		t.Fatalf("sm-collector not ready at %s/readyz after 30s:\n%s", collBase, testenv.Tail(filepath.Join(dir, "sm-collector.log"), 30))
	}

	topic := prefix + "/{site}/{line}/{asset}/{sensor}"
	edgeCfg := filepath.Join(dir, "edge.yaml")
	writeFile(t, edgeCfg, fmt.Sprintf(`version: 1
edge_id: %s
data_dir: %s
admin: {listen: "127.0.0.1:%d"}
log: {level: info, format: text}
broker:
  url: %s
  client_id: sm-edge-%s
  reconnect: {initial: 100ms, max: 1s}
subscriptions:
  - topic: %s
    qos: 1
    format: json
    json: {value: v, timestamp: ts, time_unit: ms, quality: q}
    profile: generic_4_20ma
scoring: {detector: ensemble}
buffer: {max_bytes: 67108864}
collector:
  url: %s
  token_file: %s
  batch_delay: 100ms
  status_interval: 1s
  backoff: {initial: 100ms, max: 1s}
`, edgeID, filepath.Join(dir, "edge-data"), adminPort, broker, edgeID, topic, collBase, tokenFile))
	start(t, dir, "sm-edge", edgeBin, nil, "run", "--config", edgeCfg)
	edgeBase := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	if !waitFor(30*time.Second, func() bool { return httpOK(edgeBase + "/readyz") }) {
		t.Fatalf("sm-edge not ready at %s/readyz after 30s:\n%s", edgeBase, testenv.Tail(filepath.Join(dir, "sm-edge.log"), 30))
	}

	// 1 pump × 7 sensors × 20 samples.
	testenv.RunProgram(t, edgeBin, nil, "simulate", "--broker", broker, "--topic", topic, "--assets", "1",
		"--rate", "5", "--duration", "4s", "--fast", "--progress", "0", "--drain", "10s")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	collMetrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	// The edge's /metrics needs the admin token it generated in its data
	// directory on first start.
	b, err := os.ReadFile(filepath.Join(dir, "edge-data", "admin.token"))
	if err != nil {
		t.Fatalf("the edge's admin token: %v", err)
	}
	edgeToken := strings.TrimSpace(string(b))
	if !waitFor(45*time.Second, func() bool {
		return sampleValue(ctx, collMetrics, "", `smartmaint_collector_ingest_readings_total{result="accepted"}`) > 0
	}) {
		t.Fatalf("the collector accepted no readings from the edge within 45s\nedge log:\n%s\ncollector log:\n%s",
			testenv.Tail(filepath.Join(dir, "sm-edge.log"), 30), testenv.Tail(filepath.Join(dir, "sm-collector.log"), 30))
	}
	// The edge posts its status every second; wait for one, so the status
	// counters have a sample.
	if !waitFor(30*time.Second, func() bool {
		return sampleValue(ctx, edgeBase+"/metrics", edgeToken, `smartmaint_edge_forward_status_reports_total`) > 0
	}) {
		t.Fatalf("the edge posted no status report within 30s:\n%s", testenv.Tail(filepath.Join(dir, "sm-edge.log"), 30))
	}

	if edgeTypes, err = scrapeTypes(ctx, edgeBase+"/metrics", edgeToken); err != nil {
		t.Fatal(err)
	}
	if collTypes, err = scrapeTypes(ctx, collMetrics, ""); err != nil {
		t.Fatal(err)
	}
	return edgeTypes, collTypes
}

// buildBinaries builds sm-edge and sm-collector from the working tree
// into a temporary directory (bin/ may hold older builds).
func buildBinaries(t *testing.T, root string) (edgeBin, collBin string) {
	t.Helper()
	dir := t.TempDir()
	edgeBin, collBin = filepath.Join(dir, "sm-edge"), filepath.Join(dir, "sm-collector")
	for out, pkg := range map[string]string{edgeBin: "./edge/cmd/sm-edge", collBin: "./collector/cmd/sm-collector"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, o)
		}
	}
	return edgeBin, collBin
}

// start starts a long-running program with its output in dir/name.log
// and stops it (SIGTERM, then kill) when the test ends.
func start(t *testing.T, dir, name, bin string, env []string, args ...string) {
	t.Helper()
	p := testenv.NewProcess(t, dir, name, bin, env, args...)
	p.Start()
	t.Cleanup(p.Stop)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func httpOK(url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
