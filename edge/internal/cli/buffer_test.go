package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/shared/wire"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func fillQueue(t *testing.T, dir string) *buffer.Queue {
	t.Helper()
	q, err := buffer.Open(t.Context(), filepath.Join(dir, buffer.FileName), buffer.Default(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := []wire.Reading{{Sensor: "a", Time: 1, Value: 1.5}, {Sensor: "a", Time: 2, Value: 2.5}, {Sensor: "b", Time: 1, Value: -1}}
	if err := q.Write(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	ev := []wire.Event{{Sensor: "a", Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityMajor, Rule: "H", Time: 2}}
	if err := q.WriteEvents(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	return q
}

func TestBufferStatsAndExport(t *testing.T) {
	dir := t.TempDir()
	q := fillQueue(t, dir)

	// A running agent holds the file: a clear error, nothing touched.
	code, _, stderr := run(t, "buffer", "stats", "--data-dir", dir)
	if code == 0 || !strings.Contains(stderr, "stop the agent") {
		t.Errorf("stats on a locked queue: exit %d, stderr %q", code, stderr)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := run(t, "buffer", "stats", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"records:       4", "readings:    3", "events+gaps: 1", "dead letters:  0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stats output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = run(t, "buffer", "stats", "--file", filepath.Join(dir, buffer.FileName), "--json")
	var s buffer.Stats
	if err := json.Unmarshal([]byte(stdout), &s); code != 0 || err != nil || s.Records != 4 || s.Readings != 3 {
		t.Errorf("stats --json: exit %d, %v, %+v", code, err, s)
	}

	out := filepath.Join(t.TempDir(), "backlog.jsonl")
	code, _, stderr = run(t, "buffer", "export", "--data-dir", dir, "--out", out)
	if code != 0 || !strings.Contains(stderr, "wrote 4 records") {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var kinds, sensors []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r buffer.ExportRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		kinds = append(kinds, r.Kind)
		sensors = append(sensors, r.Sensor)
		if r.Seq == 0 || r.Time == nil {
			t.Errorf("line without seq or time: %s", line)
		}
	}
	if diff := cmp.Diff([]string{"event", "reading", "reading", "reading"}, kinds); diff != "" {
		t.Errorf("export kinds (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "a", "a", "b"}, sensors); diff != "" {
		t.Errorf("export sensors (-want +got):\n%s", diff)
	}
	// The export did not consume the queue.
	if s, err := buffer.Inspect(filepath.Join(dir, buffer.FileName)); err != nil || s.Records != 4 {
		t.Errorf("after export: %+v %v", s, err)
	}
}

func TestBufferUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"buffer", "stats"}, "--data-dir"},
		{[]string{"buffer", "stats", "--data-dir", "/nonexistent/dir"}, "queue.db"},
		{[]string{"buffer", "export", "--data-dir", "/tmp"}, "--out"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error about %s", tc.args, code, stderr, tc.want)
		}
	}
}
