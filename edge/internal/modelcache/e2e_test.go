package modelcache

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartmaint/smartmaint/models/artifact"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/objstore"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

// e2eStore is where the collector publishes in the end-to-end test: an
// S3 bucket or a local directory, seen by the test through objstore.
type e2eStore struct {
	store objstore.Store
	// collectorEnv selects the store for sm-collector.
	collectorEnv []string
	// configure points the edge's models section at the store.
	configure func(*Config)
	// getenv gives the edge its S3 credentials.
	getenv func(string) string
	// artifacts lists the artifact keys.
	artifacts func(t *testing.T) map[string]bool
	// breakStore makes the store unreachable for the offline restart.
	breakStore func(t *testing.T, c *Config)
}

func s3Store(t *testing.T) e2eStore {
	env := testenv.S3(t)
	return e2eStore{
		store: objstore.S3{Client: env.Client, Bucket: env.Bucket},
		collectorEnv: []string{
			"SM_COLLECTOR_MODELS_ENDPOINT=" + env.Endpoint,
			"SM_COLLECTOR_MODELS_BUCKET=" + env.Bucket,
			"SM_COLLECTOR_MODELS_ACCESS_KEY_ID=" + env.AccessKey,
			"SM_COLLECTOR_MODELS_SECRET_ACCESS_KEY=" + env.SecretKey,
		},
		configure: func(c *Config) { c.Endpoint, c.Bucket = env.Endpoint, env.Bucket },
		getenv: func(k string) string {
			return map[string]string{EnvAccessKey: env.AccessKey, EnvSecretKey: env.SecretKey}[k]
		},
		artifacts: func(t *testing.T) map[string]bool {
			out, err := env.Client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(env.Bucket), Prefix: aws.String("fleet/" + "artifacts/")})
			if err != nil {
				t.Fatal(err)
			}
			keys := map[string]bool{}
			for _, o := range out.Contents {
				keys[aws.ToString(o.Key)] = true
			}
			return keys
		},
		breakStore: func(t *testing.T, c *Config) { c.Endpoint = "http://127.0.0.1:1" },
	}
}

func dirStore(t *testing.T) e2eStore {
	root := filepath.Join(t.TempDir(), "models")
	return e2eStore{
		store:        objstore.Dir{Root: root},
		collectorEnv: []string{"SM_COLLECTOR_MODELS_DIR=" + root},
		configure:    func(c *Config) { c.Dir = root },
		getenv:       func(string) string { return "" },
		artifacts: func(t *testing.T) map[string]bool {
			dir := filepath.Join(root, "fleet", filepath.FromSlash(mm.ArtifactDir))
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			keys := map[string]bool{}
			for _, e := range ents {
				keys[mm.ArtifactKey("fleet/", e.Name())] = true
			}
			return keys
		},
		breakStore: func(t *testing.T, c *Config) {
			if err := os.Rename(root, root+".gone"); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// TestEndToEndCollectorToEdge runs the real sm-collector binary to train
// a model from readings stored in PostgreSQL and publish and promote it
// to S3 or a local directory, then the edge model cache (as the running
// agent uses it) picks it up, verifies it and scores with it; an
// unchanged manifest downloads nothing; a tampered copy is refused and a
// rollback by the collector reaches the edge; with the store unreachable
// a restarted edge runs its cached model.
func TestEndToEndCollectorToEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sm-collector")
	}
	t.Parallel()
	// The sm-collector binary from this tree, built once.
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	bin := filepath.Join(t.TempDir(), "sm-collector")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "collector", "cmd", "sm-collector")).CombinedOutput(); err != nil {
		t.Fatalf("build sm-collector: %v\n%s", err, out)
	}
	for name, mk := range map[string]func(*testing.T) e2eStore{"s3": s3Store, "dir": dirStore} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			endToEnd(t, bin, mk(t))
		})
	}
}

func endToEnd(t *testing.T, bin string, st e2eStore) {
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	collector := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"models"}, args...)...)
		cmd.Env = append(append(os.Environ(), "DATABASE_URL="+dsn, "SM_COLLECTOR_MODELS_PREFIX=fleet/"), st.collectorEnv...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("sm-collector models %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.String()
	}

	// Stored history: the columns of the store's sensors/readings tables
	// that training reads (see collector/internal/modelreg.LoadHistory).
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`CREATE TABLE sensors (num integer GENERATED ALWAYS AS IDENTITY UNIQUE, id text PRIMARY KEY)`,
		`CREATE TABLE readings (sensor_id integer NOT NULL, time timestamptz NOT NULL, value double precision NOT NULL, PRIMARY KEY (sensor_id, time))`,
		`INSERT INTO sensors (id) VALUES ('s1/pump7/vib'), ('s1/pump7/current'), ('s1/pump7/temp')`,
		`INSERT INTO readings (sensor_id, time, value)
		 SELECT s.num, TIMESTAMPTZ '2026-10-01 00:00:00+00' + make_interval(secs => g * 60),
		        CASE s.id WHEN 's1/pump7/vib' THEN 2 + 3 * l WHEN 's1/pump7/current' THEN 10 + 8 * l ELSE 40 + 15 * l END
		          + 0.02 * sin(g * s.num * 1.3)
		 FROM sensors s, generate_series(0, 2879) g, LATERAL (SELECT 0.5 + 0.3 * sin(g / 60.0) AS l) load`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	dir := t.TempDir()
	key := filepath.Join(dir, "models.key")
	pubText := collector("keygen", "--out", key)
	if _, err := artifact.ParsePublicKey([]byte(pubText)); err != nil {
		t.Fatalf("keygen printed %q: %v", pubText, err)
	}
	model := filepath.Join(dir, "pump7.json")
	train := func(version string) {
		collector("train", "--sensors", "s1/pump7/vib,s1/pump7/current,s1/pump7/temp",
			"--from", "2026-10-01T00:00:00Z", "--to", "2026-10-03T00:00:00Z",
			"--kind", "pca", "--name", "pump7", "--version", version, "--out", model)
	}
	train("1")
	if got := collector("publish", model, "--key", key, "--promote", "sensor=s1/pump7/*"); got != "pump7@1\n" {
		t.Fatalf("publish printed %q", got)
	}

	// The edge side, as the agent builds it.
	cfg := DefaultConfig()
	st.configure(&cfg)
	cfg.Prefix, cfg.CacheDir = "fleet/", filepath.Join(dir, "edge-cache")
	cfg.TrustedKeys = []string{strings.TrimSpace(pubText)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	getenv := st.getenv
	changes := make(chan *ActiveSet, 10)
	cache, err := FromConfig(cfg, "plant1", getenv, prometheus.NewRegistry(), nil, func(s *ActiveSet) { changes <- s })
	if err != nil {
		t.Fatal(err)
	}
	cache.o.PollInterval = 20 * time.Millisecond
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cache.Run(runCtx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	waitFor := func(want string) Active {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case s := <-changes:
				if a, ok := s.Resolve("s1/pump7/vib", "vibration"); ok && a.Ref.ID() == want {
					return a
				}
			case <-deadline:
				t.Fatalf("edge never ran %s", want)
			}
		}
	}
	a := waitFor("pump7@1")
	if a.Model.Payload.Kind != "pca" || a.Model.Built.NewRow == nil {
		t.Fatalf("edge model: %+v", a.Model.Payload)
	}
	// Score normal rows and a broken relationship (vibration up, load not).
	det := a.Model.Built.NewRow()
	var normal float64
	for i := 0; i < 200; i++ {
		l := 0.5 + 0.3*float64(i%40)/40
		normal = max(normal, det.UpdateRow(int64(i)*60e9, []float64{2 + 3*l, 10 + 8*l, 40 + 15*l}))
	}
	fault := det.UpdateRow(201*60e9, []float64{2 + 3*0.5 + 4, 10 + 8*0.5, 40 + 15*0.5})
	if !(fault > normal) || fault < a.Model.Payload.Threshold {
		t.Errorf("fault score %.3f, max normal %.3f, threshold %.3f: the model does not flag the broken relationship", fault, normal, a.Model.Payload.Threshold)
	}

	// Unchanged manifest: polls answer "not modified" and download nothing.
	notMod := cache.m.polls.WithLabelValues(string(NotModified))
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(notMod) < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("polls of an unchanged manifest never answered not-modified")
		}
	}
	if n := testutil.ToFloat64(cache.m.polls.WithLabelValues(string(Changed))); n != 1 {
		t.Errorf("%v polls applied a change, want 1 (the first)", n)
	}

	// Version 2, then the collector rolls back: the edge follows.
	train("2")
	collector("publish", model, "--key", key, "--promote", "sensor=s1/pump7/*")
	waitFor("pump7@2")
	collector("rollback", "--target", "sensor=s1/pump7/*")
	waitFor("pump7@1")

	// Version 3 is altered in S3 after publishing: the edge refuses it.
	before := st.artifacts(t)
	train("3")
	collector("publish", model, "--key", key)
	var added []string
	for k := range st.artifacts(t) {
		if !before[k] {
			added = append(added, k)
		}
	}
	if len(added) != 1 {
		t.Fatalf("publish added %v", added)
	}
	obj, err := st.store.Get(ctx, added[0], "", MaxArtifactSize)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Replace(obj.Data, []byte(`"threshold"`), []byte(`"threshold" `), 1)
	if err := st.store.Put(ctx, added[0], data, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	collector("promote", "pump7@3", "--target", "sensor=s1/pump7/*")
	hash := cache.m.verifyFailures.WithLabelValues("hash")
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(hash) < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the edge never refused the altered artifact")
		}
	}
	if a, _ := cache.Active().Resolve("s1/pump7/vib", ""); a.Ref.ID() != "pump7@1" {
		t.Fatalf("after the altered artifact the edge runs %s, want pump7@1", a.Ref.ID())
	}
	stop()

	// Restart with the store unreachable: the edge starts with its cached model.
	st.breakStore(t, &cfg)
	offline, err := FromConfig(cfg, "plant1", getenv, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := offline.Load(); err != nil {
		t.Fatal(err)
	}
	if a, ok := offline.Active().Resolve("s1/pump7/vib", ""); !ok || a.Ref.ID() != "pump7@1" || a.Model.Built == nil {
		t.Fatalf("offline start: %+v %v", a.Ref, ok)
	}
	if res, err := offline.Poll(ctx); res != PollError || err == nil {
		t.Fatalf("poll with the store unreachable = %s, %v; want an error", res, err)
	}
	if a, _ := offline.Active().Resolve("s1/pump7/vib", ""); a.Ref.ID() != "pump7@1" {
		t.Fatalf("after a failed poll the edge runs %q, want pump7@1", a.Ref.ID())
	}
}
