package deploytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAlertRulesPromtool loads alerts.yml with promtool, which parses
// every expression and template, runs the rules' unit tests
// (alerts_test.yml: which alerts fire when, with which text) and checks
// the example prometheus.yml.
func TestAlertRulesPromtool(t *testing.T) {
	t.Parallel()
	tool := promtool(t)
	path := filepath.Join(repoRoot(t), "deploy", "prometheus", "alerts.yml")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", path, err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("promtool check rules did not report SUCCESS:\n%s", out)
	}
	// The rules' unit tests: synthetic series, expected alerts and text.
	tests := filepath.Join(filepath.Dir(path), "alerts_test.yml")
	if out, err := exec.CommandContext(ctx, tool, "test", "rules", tests).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", tests, err, out)
	}
	// The example server configuration, which loads alerts.yml and reads
	// the edges' admin token from sm-edge-admin.token next to it: checked
	// in a copy of the directory that has a token file.
	dir := t.TempDir()
	for _, name := range []string{"prometheus.yml", "alerts.yml"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(path), name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name), string(b))
	}
	writeFile(t, filepath.Join(dir, "sm-edge-admin.token"), "example-token\n")
	cfg := filepath.Join(dir, "prometheus.yml")
	if out, err := exec.CommandContext(ctx, tool, "check", "config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config %s: %v\n%s", cfg, err, out)
	}
}

// TestAlertRulesComplete checks what an operator relies on in every
// alert: a known severity, a summary, a description and a runbook hint,
// and unique alert names.
func TestAlertRulesComplete(t *testing.T) {
	t.Parallel()
	path := filepath.Join(repoRoot(t), "deploy", "prometheus", "alerts.yml")
	rules := loadRules(t, path)
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", path)
	}
	severities := map[string]bool{"critical": true, "major": true, "minor": true, "warning": true}
	seen := map[string]int{}
	for _, r := range rules {
		where := fmt.Sprintf("%s:%d: alert %q", path, r.line, r.Alert)
		if r.Alert == "" {
			t.Errorf("%s:%d: rule without an alert name (recording rules belong elsewhere)", path, r.line)
			continue
		}
		if prev, dup := seen[r.Alert]; dup {
			t.Errorf("%s: name also used at line %d", where, prev)
		}
		seen[r.Alert] = r.line
		if !severities[r.Labels["severity"]] {
			t.Errorf("%s: severity label %q, want one of critical, major, minor, warning", where, r.Labels["severity"])
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", where, a)
			}
		}
		if strings.TrimSpace(r.Expr) == "" {
			t.Errorf("%s: empty expr", where)
		}
	}
}

// TestDashboardQueriesPromtool writes every dashboard query, with the
// Grafana variables replaced, as a recording rule and loads the file
// with promtool, so a query that would not parse fails here instead of
// showing "bad_data" in Grafana.
func TestDashboardQueriesPromtool(t *testing.T) {
	t.Parallel()
	tool := promtool(t)
	path := filepath.Join(repoRoot(t), "deploy", "grafana", "smartmaint.json")
	d := loadDashboard(t, path)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr := grafanaVars.Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("%s: panel %d %q query %s: unknown variable in %q", path, p.ID, p.Title, tg.RefID, tg.Expr)
				continue
			}
			fmt.Fprintf(&b, "      - record: dashboard:panel%d:%s\n        expr: %q\n", p.ID, strings.ToLower(tg.RefID), expr)
			n++
		}
	}
	if n == 0 {
		t.Fatalf("%s: no queries", path)
	}
	rules := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(rules, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "check", "rules", rules).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's %d queries: %v\n%s", n, err, out)
	}
}

// TestDashboardWellFormed checks the structure Grafana needs to import
// the dashboard: a uid, unique panel ids, panels inside the 24-column
// grid, and a query on every non-row panel.
func TestDashboardWellFormed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(repoRoot(t), "deploy", "grafana", "smartmaint.json")
	d := loadDashboard(t, path)
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: uid %q, title %q: both are needed", path, d.UID, d.Title)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, v := range []string{"datasource", "edge", "collector"} {
		if !vars[v] {
			t.Errorf("%s: no template variable %q", path, v)
		}
	}
	ids := map[int]string{}
	for _, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("%s: panel id %d used by %q and %q", path, p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: panel %d %q: gridPos x=%d w=%d outside the 24-column grid", path, p.ID, p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %d %q has no query", path, p.ID, p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: panel %d %q query %s is empty", path, p.ID, p.Title, tg.RefID)
			}
		}
	}
}
