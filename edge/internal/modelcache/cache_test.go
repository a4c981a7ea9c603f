package modelcache

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	"github.com/smartmaint/smartmaint/models/train"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/objstore"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

// artifactBytes trains a small real model and signs it with priv.
func artifactBytes(t testing.TB, priv ed25519.PrivateKey, name, version string) []byte {
	t.Helper()
	rows := make([][]float64, 50)
	for i := range rows {
		rows[i] = []float64{20 + float64(i%5)}
	}
	m, err := train.Fit(rows, train.Options{Kind: models.NameEWMA, Name: name, Version: version,
		Sensors: []string{"s"}, Now: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	data, err := artifact.Encode(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// countingS3 counts GetObject calls per key on the real client.
type countingS3 struct {
	*s3.Client
	calls atomic.Int64
	keys  chan string
}

func (g *countingS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	g.calls.Add(1)
	select {
	case g.keys <- aws.ToString(in.Key):
	default:
	}
	return g.Client.GetObject(ctx, in, opts...)
}

type fixture struct {
	t       testing.TB
	env     testenv.S3Env
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	man     *mm.Manifest
	dir     string
	s3      *countingS3
	reg     *prometheus.Registry
	version int
}

const prefix = "fleet/"

func newFixture(t testing.TB) *fixture {
	t.Helper()
	env := testenv.S3(t)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, env: env, priv: priv, pub: pub, man: mm.New(), dir: t.TempDir(),
		s3: &countingS3{Client: env.Client, keys: make(chan string, 100)}}
}

func (f *fixture) put(key string, data []byte) {
	f.t.Helper()
	_, err := f.env.Client.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(f.env.Bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
	if err != nil {
		f.t.Fatalf("put %s: %v", key, err)
	}
}

// publish signs a new version of model name with priv (nil: the
// trusted key), uploads it content-addressed and returns its ref.
func (f *fixture) publish(name string, priv ed25519.PrivateKey) mm.Ref {
	f.t.Helper()
	if priv == nil {
		priv = f.priv
	}
	f.version++
	v := strconv.Itoa(f.version)
	data := artifactBytes(f.t, priv, name, v)
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	ref := mm.Ref{Name: name, Version: v, Kind: models.NameEWMA, Key: mm.ArtifactKey(prefix, sha), SHA256: sha,
		Size: int64(len(data)), Promoted: time.Now().UTC().Truncate(time.Millisecond)}
	f.put(ref.Key, data)
	return ref
}

func (f *fixture) writeManifest() {
	f.t.Helper()
	f.man.Generation++
	b, err := f.man.Marshal()
	if err != nil {
		f.t.Fatal(err)
	}
	f.put(prefix+mm.ManifestKey, b)
}

func (f *fixture) promote(t mm.Target, ref mm.Ref) {
	f.man.Promote(t, ref)
	f.writeManifest()
}

func (f *fixture) cache(getter objstore.S3API) *Cache {
	f.t.Helper()
	f.reg = prometheus.NewRegistry()
	c, err := New(Options{EdgeID: "edge-1", Dir: f.dir, Bucket: f.env.Bucket, Prefix: "fleet", S3: getter,
		Verifier: ArtifactVerifier{Trusted: []ed25519.PublicKey{f.pub}}, Registerer: f.reg, PollInterval: time.Second})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := c.Load(); err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) poll(c *Cache, want PollResult) {
	f.t.Helper()
	got, err := c.Poll(context.Background())
	if got != want {
		f.t.Fatalf("Poll = %s (%v), want %s", got, err, want)
	}
}

func modelFor(t *testing.T, c *Cache, sensor, typ string) string {
	t.Helper()
	a, ok := c.Active().Resolve(sensor, typ)
	if !ok {
		return "builtin"
	}
	if a.Model.Built == nil || a.Model.Built.Ref != a.Ref.ID() {
		t.Fatalf("active %s carries model %+v", a.Ref.ID(), a.Model.Built)
	}
	return a.Ref.ID()
}

func TestPickUpThenNotModified(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	vib := f.publish("vib", nil)
	pump := f.publish("pump7", nil)
	other := f.publish("other", nil)
	f.man.Promote(mm.Target{SensorType: "vibration"}, vib)
	f.man.Promote(mm.Target{Sensor: "plant/pump-7/*"}, pump)
	f.man.Promote(mm.Target{Edge: "edge-2"}, other)
	f.writeManifest()

	var changes atomic.Int64
	c := f.cache(f.s3)
	c.o.OnChange = func(*ActiveSet) { changes.Add(1) }
	if got := modelFor(t, c, "plant/pump-7/vib", "vibration"); got != "builtin" {
		t.Fatalf("before the first poll: %s, want builtin", got)
	}
	f.poll(c, Changed)
	cases := []struct{ sensor, typ, want string }{
		{"plant/pump-7/vib", "vibration", "pump7@2"}, // sensor glob beats type
		{"plant/fan-1/vib", "vibration", "vib@1"},
		{"plant/fan-1/temp", "temperature", "builtin"}, // edge-2's model is not ours
	}
	for _, tc := range cases {
		if got := modelFor(t, c, tc.sensor, tc.typ); got != tc.want {
			t.Errorf("Resolve(%s, %s) = %s, want %s", tc.sensor, tc.typ, got, tc.want)
		}
	}
	if changes.Load() != 1 {
		t.Errorf("OnChange called %d times, want 1", changes.Load())
	}
	for _, ref := range []mm.Ref{vib, pump} {
		if _, err := os.Stat(filepath.Join(f.dir, "artifacts", ref.SHA256)); err != nil {
			t.Errorf("artifact %s not in the cache dir: %v", ref.ID(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "artifacts", other.SHA256)); err == nil {
		t.Errorf("another edge's artifact was downloaded")
	}

	before := f.s3.calls.Load()
	f.poll(c, NotModified)
	f.poll(c, NotModified)
	if n := f.s3.calls.Load() - before; n != 2 {
		t.Errorf("two unchanged polls made %d GetObject calls, want 2 (manifest only)", n)
	}
	if v := testutil.ToFloat64(c.m.polls.WithLabelValues("not_modified")); v != 2 {
		t.Errorf("not_modified polls metric = %v, want 2", v)
	}
	if v := testutil.ToFloat64(c.m.active.WithLabelValues("type=vibration", "vib", "1")); v != 1 {
		t.Errorf("active version metric = %v, want 1", v)
	}

	// A new version for one target downloads only that artifact.
	vib2 := f.publish("vib", nil)
	f.promote(mm.Target{SensorType: "vibration"}, vib2)
	before = f.s3.calls.Load()
	f.poll(c, Changed)
	if n := f.s3.calls.Load() - before; n != 2 {
		t.Errorf("one changed target made %d GetObject calls, want 2 (manifest + artifact)", n)
	}
	if got := modelFor(t, c, "plant/fan-1/vib", "vibration"); got != "vib@4" {
		t.Errorf("after promote: %s", got)
	}
}

func TestTamperedArtifactRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tg := mm.Target{SensorType: "vibration"}
	good := f.publish("vib", nil)
	f.promote(tg, good)
	c := f.cache(f.s3)
	f.poll(c, Changed)

	// 1. Bytes changed after publishing: the manifest hash no longer matches.
	bad := f.publish("vib", nil)
	f.put(bad.Key, artifactBytes(t, f.priv, "vib", "altered"))
	f.promote(tg, bad)
	f.poll(c, Unchanged)
	if got := modelFor(t, c, "s", "vibration"); got != "vib@1" {
		t.Fatalf("after a tampered artifact: %s, want the previous model", got)
	}
	if v := testutil.ToFloat64(c.m.verifyFailures.WithLabelValues("hash")); v != 1 {
		t.Errorf("hash failures = %v, want 1", v)
	}

	// 2. Correct hash, but signed by a key this edge does not trust.
	_, rogue, _ := ed25519.GenerateKey(nil)
	unsigned := f.publish("vib", rogue)
	f.promote(tg, unsigned)
	f.poll(c, Unchanged)
	if got := modelFor(t, c, "s", "vibration"); got != "vib@1" {
		t.Fatalf("after an untrusted signature: %s, want the previous model", got)
	}
	if v := testutil.ToFloat64(c.m.verifyFailures.WithLabelValues("signature")); v != 1 {
		t.Errorf("signature failures = %v, want 1", v)
	}
	for _, r := range []mm.Ref{bad, unsigned} {
		if _, err := os.Stat(filepath.Join(f.dir, "artifacts", r.SHA256)); err == nil {
			t.Errorf("refused artifact %s was written to the cache", r.ID())
		}
	}
	// 3. Trusted signature and matching hash, but not the model the
	// manifest names (an old artifact replayed under a new name).
	swapped := f.publish("vib", nil)
	swapped.Version = "42"
	f.promote(tg, swapped)
	f.poll(c, Unchanged)
	if got := modelFor(t, c, "s", "vibration"); got != "vib@1" {
		t.Fatalf("after a swapped artifact: %s, want the previous model", got)
	}
	// A refused artifact is not retried while the manifest is unchanged.
	f.poll(c, NotModified)

	// 4. A broken manifest is an error; the models in use stay.
	f.put(prefix+mm.ManifestKey, []byte(`{"schema": 1, "entries": [{"target": {}}]}`))
	if res, err := c.Poll(context.Background()); res != PollError || err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("poll of a broken manifest = %s, %v", res, err)
	}
	if got := modelFor(t, c, "s", "vibration"); got != "vib@1" {
		t.Fatalf("after a broken manifest: %s, want the previous model", got)
	}
}

func TestManifestRollback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tg := mm.Target{}
	v1 := f.publish("m", nil)
	v2 := f.publish("m", nil)
	c := f.cache(f.s3)
	f.promote(tg, v1)
	f.poll(c, Changed)
	f.promote(tg, v2)
	f.poll(c, Changed)
	if got := modelFor(t, c, "s", "t"); got != "m@2" {
		t.Fatalf("after promote: %s", got)
	}
	if _, _, err := f.man.Rollback(tg); err != nil {
		t.Fatal(err)
	}
	f.writeManifest()
	before := f.s3.calls.Load()
	f.poll(c, Changed)
	if got := modelFor(t, c, "s", "t"); got != "m@1" {
		t.Fatalf("after rollback: %s, want m@1", got)
	}
	if n := f.s3.calls.Load() - before; n != 1 {
		t.Errorf("rollback made %d GetObject calls, want 1: the old version is on disk", n)
	}
}

func TestRestartOfflineScoresFromCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ref := f.publish("m", nil)
	f.promote(mm.Target{SensorType: "current"}, ref)
	c := f.cache(f.s3)
	f.poll(c, Changed)

	// Restart with S3 unreachable: a real client pointed at a closed port.
	dead := testenv.NewS3Client(fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), "us-east-1", "x", "y")
	c2 := f.cache(dead)
	if got := modelFor(t, c2, "s", "current"); got != "m@1" {
		t.Fatalf("offline start: %s, want the cached model", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := c2.Poll(ctx); res != PollError || err == nil {
		t.Fatalf("poll with S3 down = %s, %v; want an error", res, err)
	}
	if got := modelFor(t, c2, "s", "current"); got != "m@1" {
		t.Fatalf("after a failed poll: %s, want the cached model", got)
	}
}

func TestCorruptCacheFileMovedAside(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tg := mm.Target{}
	v1 := f.publish("m", nil)
	v2 := f.publish("m", nil)
	c := f.cache(f.s3)
	f.promote(tg, v1)
	f.poll(c, Changed)
	f.promote(tg, v2)
	f.poll(c, Changed)

	path := filepath.Join(f.dir, "artifacts", v2.SHA256)
	if err := os.WriteFile(path, []byte("bit rot"), 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := f.cache(f.s3)
	if got := modelFor(t, c2, "s", "t"); got != "m@1" {
		t.Fatalf("after corrupting the active artifact: %s, want fallback to m@1", got)
	}
	q, _ := os.ReadDir(filepath.Join(f.dir, "quarantine"))
	if len(q) != 1 {
		t.Fatalf("quarantine holds %d files, want 1", len(q))
	}
	if v := testutil.ToFloat64(c2.m.verifyFailures.WithLabelValues("cache_corrupt")); v != 1 {
		t.Errorf("cache_corrupt = %v, want 1", v)
	}
	// The next poll fetches the manifest in full and downloads v2 again.
	f.poll(c2, Changed)
	if got := modelFor(t, c2, "s", "t"); got != "m@2" {
		t.Fatalf("after re-download: %s, want m@2", got)
	}

	// A corrupt state file is moved aside too; the agent starts empty.
	if err := os.WriteFile(filepath.Join(f.dir, stateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	c3 := f.cache(f.s3)
	if got := modelFor(t, c3, "s", "t"); got != "builtin" {
		t.Fatalf("after a corrupt state file: %s, want builtin", got)
	}
	f.poll(c3, Changed)
	if got := modelFor(t, c3, "s", "t"); got != "m@2" {
		t.Fatalf("after recovery: %s", got)
	}
}

func TestRejectFallsBackAndSticks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tg := mm.Target{SensorType: "flow"}
	v1 := f.publish("m", nil)
	v2 := f.publish("m", nil)
	c := f.cache(f.s3)
	f.promote(tg, v1)
	f.poll(c, Changed)
	f.promote(tg, v2)
	f.poll(c, Changed)

	c.Reject(tg, v2, "flagged 90 % of readings")
	if got := modelFor(t, c, "s", "flow"); got != "m@1" {
		t.Fatalf("after Reject: %s, want m@1", got)
	}
	if v := testutil.ToFloat64(c.m.rollbacks); v != 1 {
		t.Errorf("rollbacks metric = %v", v)
	}
	// The manifest still names v2: neither a poll of a changed manifest
	// nor a restart brings it back.
	f.writeManifest()
	f.poll(c, Unchanged)
	if got := modelFor(t, c, "s", "flow"); got != "m@1" {
		t.Fatalf("after poll: %s, want m@1", got)
	}
	c2 := f.cache(f.s3)
	f.writeManifest()
	f.poll(c2, Unchanged)
	if got := modelFor(t, c2, "s", "flow"); got != "m@1" {
		t.Fatalf("after restart: %s, want m@1", got)
	}
	// A fresh version is adopted again.
	v3 := f.publish("m", nil)
	f.promote(tg, v3)
	f.poll(c2, Changed)
	if got := modelFor(t, c2, "s", "flow"); got != "m@3" {
		t.Fatalf("after a new promote: %s, want m@3", got)
	}
}

// TestRunPicksUpAndScores runs the poll loop as the agent does: a model
// promoted while it runs is picked up, verified and scores readings, and
// a guard rollback from the scoring side takes effect at once.
func TestRunPicksUpAndScores(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.cache(f.s3)
	c.o.PollInterval = 20 * time.Millisecond
	changes := make(chan *ActiveSet, 10)
	c.o.OnChange = func(s *ActiveSet) { changes <- s }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor := func(want string) *ActiveSet {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case s := <-changes:
				if a, ok := s.Resolve("line1/pump/flow", "flow"); ok && a.Ref.ID() == want {
					return s
				}
				if _, ok := s.Resolve("line1/pump/flow", "flow"); !ok && want == "builtin" {
					return s
				}
			case <-deadline:
				t.Fatalf("model %s never became active", want)
			}
		}
	}
	<-changes // Load publishes the (empty) cached set first

	tg := mm.Target{SensorType: "flow"}
	v1 := f.publish("flow", nil)
	f.promote(tg, v1)
	set := waitFor("flow@1")
	a, _ := set.Resolve("line1/pump/flow", "flow")
	det := a.Model.Built.NewSensor()
	for i := 0; i < 500; i++ {
		s := det.Update(int64(i)*int64(time.Second), 20+0.1*float64(i%7))
		if s < 0 || s > 1 {
			t.Fatalf("score %v out of [0,1]", s)
		}
	}

	v2 := f.publish("flow", nil)
	f.promote(tg, v2)
	waitFor("flow@2")
	// The detect stage's guard decides v2 is implausible while polls run.
	c.Reject(tg, v2, "flagged 60 % of readings")
	if got := modelFor(t, c, "line1/pump/flow", "flow"); got != "flow@1" {
		t.Fatalf("after Reject: %s", got)
	}
	// Later polls (not modified) keep the rollback.
	nm := c.m.polls.WithLabelValues(string(NotModified))
	base := testutil.ToFloat64(nm)
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(nm) < base+2; {
		if time.Now().After(deadline) {
			t.Fatal("no further polls")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := modelFor(t, c, "line1/pump/flow", "flow"); got != "flow@1" {
		t.Fatalf("after more polls: %s", got)
	}
}

// TestOnChangeMayReject checks that the callback runs without the cache's
// locks: a guard that rejects from inside it does not deadlock, and the
// fallback set is delivered after the set that was rejected.
func TestOnChangeMayReject(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tg := mm.Target{}
	v1, v2 := f.publish("m", nil), f.publish("m", nil)
	var c *Cache
	var seen []string
	f.promote(tg, v1)
	c = f.cache(f.s3)
	c.o.OnChange = func(s *ActiveSet) {
		a, ok := s.Resolve("x", "y")
		if !ok {
			seen = append(seen, "builtin")
			return
		}
		seen = append(seen, a.Ref.ID())
		if a.Ref.ID() == v2.ID() {
			c.Reject(a.Target, a.Ref, "implausible")
		}
	}
	f.poll(c, Changed)
	f.promote(tg, v2)
	f.poll(c, Changed)
	if diff := cmp.Diff([]string{"m@1", "m@2", "m@1"}, seen); diff != "" {
		t.Fatalf("sets delivered (-want +got):\n%s", diff)
	}
}

// FuzzLoadState feeds arbitrary bytes as state.json: Load must not fail
// or panic, whatever a crash or a disk left behind.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"targets":{}}`))
	f.Add([]byte(`{"version":1,"etag":"x","targets":{"*":{"target":{},"good":[{"name":"m","version":"1","sha256":"00"}]}},"rejected":{"a":"b"}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"targets":{"*":null}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, stateFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := New(Options{Dir: dir, Verifier: ArtifactVerifier{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Load(); err != nil {
			t.Fatalf("Load: %v", err)
		}
		if len(c.Active().Entries) != 0 {
			t.Fatalf("a model became active from a state file alone")
		}
		if _, err := ReadStatus(dir); err != nil {
			t.Fatalf("ReadStatus after Load: %v", err)
		}
	})
}
