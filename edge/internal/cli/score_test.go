package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	"github.com/smartmaint/smartmaint/models/train"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sineCSV(n int, spikeAt int) string {
	var b strings.Builder
	b.WriteString("timestamp,a,b\n")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		x := float64(i%50) / 10
		y := 2*x + float64(i%7)*0.01
		if i == spikeAt {
			x += 100
		}
		b.WriteString(t0.Add(time.Duration(i)*time.Minute).Format(time.RFC3339) + "," +
			strconv.FormatFloat(x, 'g', -1, 64) + "," + strconv.FormatFloat(y, 'g', -1, 64) + "\n")
	}
	return b.String()
}

func TestScoreCommand(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "in.csv", sineCSV(800, 700))
	out := filepath.Join(dir, "out.csv")
	code, stdout, stderr := runCLI(t, "score", "--input", in, "--output", out, "--train-rows", "100")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if !strings.Contains(stderr, "rows/s") || !strings.Contains(stderr, "ensemble@builtin") {
		t.Errorf("stderr %q lacks the rate and model", stderr)
	}
	data, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 801 || lines[0] != "timestamp,anomaly_score,label" {
		t.Fatalf("%d lines, header %q", len(lines), lines[0])
	}
	if !strings.HasSuffix(lines[1], ",,") || !strings.HasSuffix(lines[701], ",1") {
		t.Errorf("training row %q, spike row %q", lines[1], lines[701])
	}
}

func TestScoreCommandErrors(t *testing.T) {
	dir := t.TempDir()
	in := writeFile(t, dir, "in.csv", "timestamp,a\n2026-01-01 00:00:00,1\n2026-01-01 00:01:00,x\n")
	out := filepath.Join(dir, "out.csv")
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"score", "--input", in, "--output", out}, 1, "in.csv:line 3 column 21 (a): \"x\" is not a number"},
		{[]string{"score", "--input", in}, 2, "--input and --output are required"},
		{[]string{"score", "--input", in, "--output", out, "--detector", "magic"}, 2, "unknown detector"},
		{[]string{"score", "--input", in, "--output", out, "--model", "m.smm"}, 2, "--trusted-key"},
		{[]string{"score", "--input", filepath.Join(dir, "nope.csv"), "--output", out}, 2, "open input"},
	}
	for _, tc := range tests {
		code, _, stderr := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d stderr %q, want %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

func TestScoreCommandWithModel(t *testing.T) {
	dir := t.TempDir()
	csv := sineCSV(800, 700)
	in := writeFile(t, dir, "in.csv", csv)
	rows := [][]float64{}
	for i := 0; i < 300; i++ {
		x := float64(i%50) / 10
		rows = append(rows, []float64{x, 2*x + float64(i%7)*0.01})
	}
	m, err := train.Fit(rows, train.Options{Kind: models.NamePCA, Name: "ab", Version: "3", Sensors: []string{"a", "b"}, Now: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	data, _ := artifact.Encode(m, key)
	model := filepath.Join(dir, "ab.smm")
	_ = os.WriteFile(model, data, 0o644)
	pub := writeFile(t, dir, "k.pub", artifact.FormatPublicKey(key.Public().(ed25519.PublicKey)))
	out := filepath.Join(dir, "out.csv")
	code, _, stderr := runCLI(t, "score", "--input", in, "--output", out, "--model", model, "--trusted-key", pub)
	if code != 0 || !strings.Contains(stderr, "ab@3") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// Tampered: one payload byte changed.
	data[len(data)-3] ^= 1
	_ = os.WriteFile(model, data, 0o644)
	code, _, stderr = runCLI(t, "score", "--input", in, "--output", out, "--model", model, "--trusted-key", pub)
	if code == 0 || !strings.Contains(stderr, "digest or signature mismatch") {
		t.Fatalf("tampered model: exit %d: %s", code, stderr)
	}
}
