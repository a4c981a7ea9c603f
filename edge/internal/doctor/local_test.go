package doctor

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/edge/internal/admin"
	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/edge/internal/forward"
	"github.com/smartmaint/smartmaint/edge/internal/modelcache"
	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	"github.com/smartmaint/smartmaint/models/train"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// dataDir is the data_dir of a config written by writeConfig.
func dataDir(file string) string { return filepath.Join(filepath.Dir(file), "data") }

// fillQueue writes n readings into the queue of file's data dir and
// closes it (a stopped agent's queue).
func fillQueue(t *testing.T, file string, n int) {
	t.Helper()
	dir := dataDir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	q, err := buffer.Open(context.Background(), filepath.Join(dir, buffer.FileName), buffer.Default(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := make([]wire.Reading, n)
	for i := range rs {
		rs[i] = wire.Reading{Sensor: "s1/level", Time: time.Now().Add(time.Duration(i) * time.Millisecond).UnixNano(), Value: float64(i)}
	}
	if err := q.Write(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDiskAndBuffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		extra   string
		prepare func(t *testing.T, file string)
		wants   []want
	}{
		{"fresh install", "", nil, []want{
			{name: "disk", status: OK, detail: []string{"free of", "does not exist yet", "buffer budget 1.0 GiB fits", "runway unknown"}},
			{name: "buffer", status: OK, detail: []string{"no queue yet"}},
		}},
		{"stopped agent's queue", "", func(t *testing.T, file string) { fillQueue(t, file, 250) }, []want{
			{name: "disk", status: OK, detail: []string{"buffer budget 1.0 GiB fits"}},
			{name: "buffer", status: OK, detail: []string{"bbolt file healthy (agent stopped): 250 record(s)", "11.2 KiB queued", "last sequence"}},
		}},
		{"budget above free space", "buffer: {max_bytes: 1125899906842624}\n", nil, []want{
			{name: "disk", status: Warn, detail: []string{"the buffer budget 1.0 PiB exceeds the free space"}, hint: []string{"lower buffer.max_bytes to about"}},
		}},
		{"damaged queue file", "", func(t *testing.T, file string) {
			if err := os.MkdirAll(dataDir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			junk := bytes.Repeat([]byte("not a bbolt file "), 4096)
			if err := os.WriteFile(filepath.Join(dataDir(file), buffer.FileName), junk, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []want{
			{name: "buffer", status: Fail, detail: []string{"the queue file is damaged"}, hint: []string{"moves a damaged queue file aside"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := writeConfig(t, setup{extra: tt.extra})
			if tt.prepare != nil {
				tt.prepare(t, file)
			}
			check(t, runDoctor(t, file, time.Second), tt.wants...)
		})
	}
}

// agentToken is the admin token of the agents startAdmin runs.
const agentToken = "agent-admin-token"

// startAdmin serves a real admin endpoint reporting st, as a running
// agent does; ready is its readiness.
func startAdmin(t *testing.T, st admin.Status, ready error) string {
	t.Helper()
	srv, err := admin.Listen(admin.Options{Listen: "127.0.0.1:0", Token: agentToken, Gatherer: prometheus.NewRegistry(),
		Status: func(int) admin.Status { return st }, Ready: func(context.Context) error { return ready }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.Addr()
}

// TestRunningAgent: while an agent holds the queue, the doctor reports
// the agent's view of it and asks its /healthz and /readyz.
func TestRunningAgent(t *testing.T) {
	t.Parallel()
	now := time.Now()
	healthy := admin.Status{EdgeID: "e1", Version: "1.2.3", StartedAt: now.Add(-time.Hour), Now: now,
		Queue:  &buffer.Stats{Records: 1200, Bytes: 96000, MaxBytes: 1 << 30, OldestAge: 90 * time.Second, BytesPerSecond: 2000, RunwayHours: 140},
		Uplink: &forward.State{Up: true}}
	troubled := healthy
	troubled.Queue = &buffer.Stats{Records: 5000, Bytes: 400000, MaxBytes: 1 << 30, BytesPerSecond: 50000, RunwayHours: 5.9, Drops: map[string]uint64{"budget": 17}}
	troubled.Uplink = &forward.State{Up: false, Alarms: []string{forward.AlarmUnauthorized}, LastError: "collector refused the edge credential: 401 Unauthorized"}
	tests := []struct {
		name  string
		st    admin.Status
		ready error
		token string // in DATA_DIR/admin.token; "" for agentToken
		wants []want
	}{
		{"healthy", healthy, nil, "", []want{
			{name: "buffer", status: OK, detail: []string{"in use by the running agent: 1200 record(s)", "oldest 1m30s old"}},
			{name: "disk", status: OK, detail: []string{"runway 140.0 h at the current 2.0 KiB/s"}},
			{name: "admin.healthz", status: OK, detail: []string{`/healthz answers 200 "ok"`, "agent 1.2.3, up 1h0m0s"}},
			{name: "admin.readyz", status: OK, detail: []string{`"ready"`}},
		}},
		{"wrong token", healthy, nil, "not-the-agents", []want{
			{name: "admin", status: Fail, detail: []string{"answered 401", "admin.token"}, hint: []string{"same config", "admin.token"}},
		}},
		{"alarms, drops, not ready", troubled, errors.New("broker disconnected"), "", []want{
			{name: "buffer", status: Fail, detail: []string{"dropped since start: budget=17", "uplink alarms: uplink_unauthorized", "uplink down: collector refused"},
				hint: []string{"re-register with `sm-collector edge register`", "raise buffer.max_bytes"}},
			{name: "disk", status: Warn, detail: []string{"runway 5.9 h"}, hint: []string{"less than a day"}},
			{name: "admin.healthz", status: OK},
			{name: "admin.readyz", status: Fail, detail: []string{"503", "not ready: broker disconnected"}, hint: []string{"sm-edge status"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := startAdmin(t, tt.st, tt.ready)
			file := writeConfig(t, setup{admin: addr})
			if err := os.MkdirAll(dataDir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			token := cmp.Or(tt.token, agentToken)
			if err := os.WriteFile(filepath.Join(dataDir(file), admin.TokenFileName), []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			// The "agent" holds the queue file, as a running one does.
			q, err := buffer.Open(context.Background(), filepath.Join(dataDir(file), buffer.FileName), buffer.Default(), buffer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			check(t, runDoctor(t, file, 3*time.Second), tt.wants...)
		})
	}
}

// TestLockedQueueWithoutAdmin: a queue held by a process whose admin
// endpoint does not answer is reported, not guessed at.
func TestLockedQueueWithoutAdmin(t *testing.T) {
	t.Parallel()
	file := writeConfig(t, setup{})
	if err := os.MkdirAll(dataDir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	q, err := buffer.Open(context.Background(), filepath.Join(dataDir(file), buffer.FileName), buffer.Default(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	check(t, runDoctor(t, file, 2*time.Second),
		want{name: "buffer", status: Warn, detail: []string{"locked by a running agent", "does not report the queue"}, hint: []string{"admin.listen"}},
		want{name: "admin", status: Skip, detail: []string{"no agent answers"}})
}

// TestModelCache fills a model cache from a real S3 manifest, as the
// agent does, then verifies it with the doctor; a damaged artifact and
// an untrusted key fail.
func TestModelCache(t *testing.T) {
	t.Parallel()
	env := testenv.S3(t)
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	fill := func(t *testing.T, dir string) mm.Ref {
		m, err := train.Fit([][]float64{{1}, {2}, {3}}, train.Options{Kind: models.NameEWMA, Name: "vib", Version: "1", Sensors: []string{"s"}, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		data, err := artifact.Encode(m, priv)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		sha := hex.EncodeToString(sum[:])
		ref := mm.Ref{Name: "vib", Version: "1", Kind: m.Kind, Key: mm.ArtifactKey("", sha), SHA256: sha, Size: int64(len(data))}
		man := mm.New()
		man.Promote(mm.Target{SensorType: "vibration"}, ref)
		b, _ := man.Marshal()
		for key, body := range map[string][]byte{ref.Key: data, mm.ManifestKey: b} {
			if _, err := env.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
				t.Fatal(err)
			}
		}
		c, err := modelcache.New(modelcache.Options{EdgeID: "e1", Dir: dir, Bucket: env.Bucket, S3: env.Client,
			Verifier: modelcache.ArtifactVerifier{Trusted: []ed25519.PublicKey{pub}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Load(); err != nil {
			t.Fatal(err)
		}
		if res, err := c.Poll(ctx); res != modelcache.Changed {
			t.Fatalf("poll: %s %v", res, err)
		}
		return ref
	}
	section := func(key ed25519.PublicKey) string {
		return fmt.Sprintf("models:\n  endpoint: %s\n  bucket: %s\n  trusted_keys: [%q]\n", env.Endpoint, env.Bucket, artifact.FormatPublicKey(key))
	}
	tests := []struct {
		name   string
		key    ed25519.PublicKey
		damage bool
		empty  bool
		wants  []want
	}{
		{"verified", pub, false, false, []want{{name: "models", status: OK, detail: []string{"1 cached model(s) verified"}}}},
		{"empty cache", pub, false, true, []want{{name: "models", status: OK, detail: []string{"is empty"}}}},
		{"damaged artifact", pub, true, false, []want{{name: "models", status: Fail, detail: []string{"1 of 1 cached model(s) failed", "vib@1"}, hint: []string{"moves it aside and downloads it again"}}}},
		{"untrusted key", otherPub, false, false, []want{{name: "models", status: Fail, detail: []string{"1 of 1"}, hint: []string{"models.trusted_keys"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the cases share the test's bucket.
			file := writeConfig(t, setup{extra: section(tt.key)})
			dir := filepath.Join(dataDir(file), "models")
			if !tt.empty {
				ref := fill(t, dir)
				if tt.damage {
					p := filepath.Join(dir, "artifacts", ref.SHA256)
					if err := os.WriteFile(p, []byte("flipped bits"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			check(t, runDoctor(t, file, time.Second), tt.wants...)
		})
	}
	check(t, runDoctor(t, writeConfig(t, setup{}), time.Second), want{name: "models", status: Skip, detail: []string{"built-in detectors"}})
}
