package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

// run executes sm-collector with args and returns stdout, stderr, status.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// pumpCSV writes n rows of a pump in normal operation: vibration,
// current and temperature following one load signal plus noise.
func pumpCSV(t *testing.T, path string, n int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("time,vib,current,temp\n")
	t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		load := 0.5 + 0.3*math.Sin(float64(i)/50)
		noise := func(k int) float64 { return 0.02 * math.Sin(float64(i*k)*1.7) }
		fmt.Fprintf(&b, "%s,%.4f,%.4f,%.4f\n", t0.Add(time.Duration(i)*time.Minute).Format(time.RFC3339),
			2+3*load+noise(3), 10+8*load+noise(5), 40+15*load+noise(7))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestModelsTrainPublishPromoteRollback(t *testing.T) {
	env := testenv.S3(t)
	db := testenv.Postgres(t)
	t.Setenv(envModelsAccess, env.AccessKey)
	t.Setenv(envModelsSecret, env.SecretKey)
	dir := t.TempDir()
	reg := []string{"--database", db, "--s3-endpoint", env.Endpoint, "--bucket", env.Bucket, "--prefix", "fleet/"}
	models := func(args ...string) (string, string, int) {
		return run(t, append(append([]string{"models"}, args...), reg...)...)
	}

	key := filepath.Join(dir, "models.key")
	pub, stderr, code := models("keygen", "--out", key)
	if code != 0 || !strings.HasPrefix(pub, "ed25519:") {
		t.Fatalf("keygen: %d %q %s", code, pub, stderr)
	}
	if _, _, code := models("keygen", "--out", key); code == 0 {
		t.Fatal("keygen overwrote an existing key")
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode().Perm())
	}

	csv := filepath.Join(dir, "pump.csv")
	pumpCSV(t, csv, 600)
	m1 := filepath.Join(dir, "pump-1.json")
	out, stderr, code := models("train", "--csv", csv, "--name", "pump7", "--version", "1", "--out", m1)
	if code != 0 || out != "pump7@1\n" {
		t.Fatalf("train: %d %q\n%s", code, out, stderr)
	}
	for _, want := range []string{"training pca on 600 rows × 3 sensors", "train_alarm_rate", "window 2026-10-01T00:00:00Z"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("train output lacks %q:\n%s", want, stderr)
		}
	}

	// Unsigned without a key is refused; with the key it is published and promoted.
	if _, stderr, code := models("publish", m1); code == 0 || !strings.Contains(stderr, "not signed") {
		t.Fatalf("unsigned publish: %d %s", code, stderr)
	}
	out, stderr, code = models("publish", m1, "--key", key, "--promote", "type=vibration")
	if code != 0 || out != "pump7@1\n" {
		t.Fatalf("publish: %d %q %s", code, out, stderr)
	}

	// A second version, signed at training time and published with the public key only.
	pubFile := filepath.Join(dir, "models.pub")
	os.WriteFile(pubFile, []byte(pub), 0o600)
	m2 := filepath.Join(dir, "pump-2.smm")
	if _, stderr, code := models("train", "--csv", csv, "--name", "pump7", "--version", "2", "--key", key, "--out", m2); code != 0 {
		t.Fatalf("train signed: %s", stderr)
	}
	if out, stderr, code := models("publish", m2, "--trusted-key", pubFile); code != 0 || out != "pump7@2\n" {
		t.Fatalf("publish signed: %d %q %s", code, out, stderr)
	}
	if _, stderr, code := models("promote", "pump7@2", "--target", "type=vibration"); code != 0 {
		t.Fatalf("promote: %s", stderr)
	}
	out, _, _ = models("list", "--manifest")
	if !strings.Contains(out, "type=vibration  pump7@2") || !strings.Contains(out, "pump7@1") {
		t.Fatalf("manifest after promote:\n%s", out)
	}
	if _, stderr, code := models("rollback", "--target", "type=vibration"); code != 0 || !strings.Contains(stderr, "from pump7@2 to pump7@1") {
		t.Fatalf("rollback: %d %s", code, stderr)
	}
	out, _, _ = models("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "pump7@2") || !strings.Contains(lines[1], "retired") ||
		!strings.HasPrefix(lines[2], "pump7@1") || !strings.Contains(lines[2], "active") || !strings.Contains(lines[2], "type=vibration") {
		t.Fatalf("list after rollback:\n%s", out)
	}
	if _, stderr, code := models("promote", "pump7@9", "--target", "*"); code == 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("promote of unknown model: %d %s", code, stderr)
	}
}

// TestModelsTrainFromHistory trains an asset model from readings stored
// in PostgreSQL with the collector's real schema. Readings older than the
// default retention land in the DEFAULT partition, which training reads all
// the same.
func TestModelsTrainFromHistory(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, store.Options{Timescale: store.TimescaleOff, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Migrate(ctx)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`INSERT INTO sensors (id) VALUES ('s1/pump7/vib'), ('s1/pump7/current'), ('s1/pump7/temp')`,
		// One load signal drives all three; readings every 10 s for 2 days, jittered per sensor.
		`INSERT INTO readings (sensor_id, time, value)
		 SELECT s.num, TIMESTAMPTZ '2026-10-01 00:00:00+00' + make_interval(secs => g * 10 + s.num),
		        CASE s.id WHEN 's1/pump7/vib' THEN 2 + 3 * l WHEN 's1/pump7/current' THEN 10 + 8 * l ELSE 40 + 15 * l END
		          + 0.01 * sin(g * s.num * 1.3)
		 FROM sensors s, generate_series(0, 17279) g, LATERAL (SELECT 0.5 + 0.3 * sin(g / 300.0) AS l) load`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	out := filepath.Join(t.TempDir(), "pump7.json")
	stdout, stderr, code := run(t, "models", "train", "--database", dsn,
		"--sensors", "s1/pump7/vib,s1/pump7/current,s1/pump7/temp",
		"--from", "2026-10-01T00:00:00Z", "--to", "2026-10-03T00:00:00Z", "--step", "1m",
		"--name", "pump7", "--version", "h1", "--out", out)
	if code != 0 || stdout != "pump7@h1\n" {
		t.Fatalf("train from history: %d %q\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"training pca on 2880 rows × 3 sensors", "window 2026-10-01T00:00:00Z .. 2026-10-02T23:59:00Z"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("output lacks %q:\n%s", want, stderr)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil || !bytes.Contains(b, []byte(`"source": "db:s1/pump7/vib,s1/pump7/current,s1/pump7/temp 2026-10-01T00:00:00Z..2026-10-03T00:00:00Z"`)) {
		t.Fatalf("model file: %v\n%.400s", err, b)
	}
	if _, stderr, code := run(t, "models", "train", "--database", dsn, "--sensors", "s1/pump7/vib,nope",
		"--from", "2026-10-01T00:00:00Z", "--to", "2026-10-03T00:00:00Z", "--name", "x", "--out", out); code == 0 || !strings.Contains(stderr, "unknown sensor(s): nope") {
		t.Fatalf("unknown sensor: %d %s", code, stderr)
	}
}

// TestModelsStoreChoice: --dir and the S3 flags are alternatives, and
// without either the error says how to choose.
func TestModelsStoreChoice(t *testing.T) {
	for _, env := range []string{envModelsDir, envModelsBucket, envModelsEndpoint} {
		t.Setenv(env, "")
	}
	db := "postgres://127.0.0.1:1/none" // never reached: the store is checked first
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"both", []string{"--dir", t.TempDir(), "--bucket", "models"}, "--dir (SM_COLLECTOR_MODELS_DIR) and --bucket/--s3-endpoint are alternatives"},
		{"dir and endpoint", []string{"--dir", t.TempDir(), "--s3-endpoint", "http://127.0.0.1:7070"}, "are alternatives"},
		{"neither", nil, "no model store: set --dir (SM_COLLECTOR_MODELS_DIR) for a local directory, or --bucket"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := run(t, append([]string{"models", "list", "--database", db}, c.args...)...)
			if code == 0 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, stderr, c.want)
			}
		})
	}
}
