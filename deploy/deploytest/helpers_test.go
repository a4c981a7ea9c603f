package deploytest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// repoRoot walks up from the working directory to the directory holding
// go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// promtool returns the path of promtool, or reports it missing.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Missing(t, "promtool (Debian/Ubuntu: apt-get install -y prometheus): %v", err)
	}
	return p
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	line        int
}

// loadRules parses deploy/prometheus/alerts.yml, keeping each rule's line.
func loadRules(t *testing.T, path string) []rule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var f ruleFile
	if err := doc.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// Line numbers: the n-th rule mapping under groups[*].rules.
	var lines []int
	var walk func(n *yaml.Node, inRules bool)
	walk = func(n *yaml.Node, inRules bool) {
		if inRules && n.Kind == yaml.MappingNode {
			lines = append(lines, n.Line)
			return
		}
		for i, c := range n.Content {
			if n.Kind == yaml.MappingNode && i%2 == 1 && n.Content[i-1].Value == "rules" {
				for _, r := range c.Content {
					walk(r, true)
				}
				continue
			}
			walk(c, false)
		}
	}
	walk(&doc, false)
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(lines) == len(out) {
		for i := range out {
			out[i].line = lines[i]
		}
	}
	return out
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T, path string) dashboard {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// grafanaVars maps the dashboard's variables to values that make each
// query plain PromQL, for promtool.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "1h",
	"$edge_job", "sm-edge",
	"$collector_job", "sm-collector",
	"$edge", ".*",
	"$collector", ".*",
)

// projectMetric matches the names of the project's metric families (and
// their _bucket/_sum/_count series).
var projectMetric = regexp.MustCompile(`\bsmartmaint_[a-z0-9_]+\b`)

// selectorName matches any identifier used as a selector (followed by a
// label matcher or a range), to catch metric names outside the project's
// prefix.
var selectorName = regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)

// foreignMetrics are metric names the rules may use although neither
// binary exports them: `up` is written by Prometheus for every scrape
// target.
var foreignMetrics = []string{"up"}

// metricNames returns the metric names used in PromQL text (an expression
// or a template that embeds one).
func metricNames(text string) []string {
	var out []string
	out = append(out, projectMetric.FindAllString(text, -1)...)
	for _, m := range selectorName.FindAllStringSubmatch(text, -1) {
		name := m[1]
		if strings.HasPrefix(name, "smartmaint_") {
			continue
		}
		switch name {
		case "by", "without", "on", "ignoring", "group_left", "group_right", "offset":
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// family returns the family a series name belongs to, given the families
// a binary exports and their types.
func family(name string, types map[string]string) (string, bool) {
	if _, ok := types[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		switch types[base] {
		case "histogram":
			return base, true
		case "summary":
			if suf != "_bucket" {
				return base, true
			}
		}
	}
	return "", false
}

// scrapeTypes fetches a /metrics page (with the bearer token, unless "")
// and returns its families and types (from the # TYPE lines).
func scrapeTypes(ctx context.Context, url, bearer string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("scrape %s: %s: %s", url, resp.Status, b)
	}
	types := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return types, nil
}

// sampleValue returns the sum of the samples of series whose line starts
// with prefix (a name, optionally with labels), from a /metrics page
// (fetched with the bearer token, unless "").
func sampleValue(ctx context.Context, url, bearer, prefix string) float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// sourceDefines reports the non-test Go file under dir that contains the
// quoted metric name, or "".
func sourceDefines(t *testing.T, dir, name string) string {
	t.Helper()
	quoted := []byte(`"` + name + `"`)
	var found string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || found != "" {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), string(quoted)) {
			found = path
		}
		return nil
	})
	if err != nil {
		t.Fatalf("search %s: %v", dir, err)
	}
	return found
}

// waitFor polls cond until it is true or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
