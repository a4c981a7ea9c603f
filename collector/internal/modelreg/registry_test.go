package modelreg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	"github.com/smartmaint/smartmaint/models/train"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/objstore"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

// signed trains a tiny real model and signs it.
func signed(t *testing.T, priv ed25519.PrivateKey, name, version string, level float64) []byte {
	t.Helper()
	rows := make([][]float64, 50)
	for i := range rows {
		rows[i] = []float64{level + float64(i%3)}
	}
	m, err := train.Fit(rows, train.Options{Kind: models.NameEWMA, Name: name, Version: version,
		Sensors: []string{"s"}, Source: fmt.Sprintf("test-%v", level), Now: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	data, err := artifact.Encode(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newRegistry(t *testing.T) (*Registry, testenv.S3Env) {
	t.Helper()
	env := testenv.S3(t)
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	r, err := New(objstore.S3{Client: env.Client, Bucket: env.Bucket}, pool, Options{Prefix: "fleet"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Init(ctx); err != nil {
		t.Fatalf("second Init must be a no-op: %v", err)
	}
	return r, env
}

func getObject(t *testing.T, env testenv.S3Env, key string) []byte {
	t.Helper()
	out, err := env.Client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPublishPromoteRollback(t *testing.T) {
	t.Parallel()
	r, env := newRegistry(t)
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)
	trusted := []ed25519.PublicKey{pub}
	a1, a2 := signed(t, priv, "pump", "1", 10), signed(t, priv, "pump", "2", 20)

	m1, err := r.Publish(ctx, a1, trusted)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(a1)
	if m1.Name != "pump" || m1.Version != "1" || m1.Kind != models.NameEWMA || m1.SHA256 != hex.EncodeToString(sum[:]) || m1.Key != "fleet/artifacts/sha256/"+m1.SHA256 {
		t.Fatalf("published model = %+v", m1)
	}
	if got := getObject(t, env, m1.Key); !bytes.Equal(got, a1) {
		t.Fatal("artifact in S3 differs from the published bytes")
	}
	// Same bytes again: idempotent. Other bytes for the same version: refused.
	if again, err := r.Publish(ctx, a1, trusted); err != nil || again.Version != "1" {
		t.Fatalf("re-publish = %+v, %v", again, err)
	}
	if _, err := r.Publish(ctx, signed(t, priv, "pump", "1", 99), trusted); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting publish error = %v, want ErrConflict", err)
	}
	// Untrusted or altered artifacts are not published.
	_, rogue, _ := ed25519.GenerateKey(nil)
	if _, err := r.Publish(ctx, signed(t, rogue, "pump", "9", 1), trusted); !errors.Is(err, artifact.ErrUntrusted) {
		t.Fatalf("untrusted publish error = %v", err)
	}
	altered := bytes.Replace(a2, []byte(`"pump"`), []byte(`"pumq"`), 1)
	if _, err := r.Publish(ctx, altered, trusted); !errors.Is(err, artifact.ErrTampered) {
		t.Fatalf("altered publish error = %v", err)
	}
	m2, err := r.Publish(ctx, a2, trusted)
	if err != nil || m2.Version != "2" {
		t.Fatalf("second publish = %+v, %v", m2, err)
	}

	// Nothing is promoted yet: no manifest object.
	if m, err := r.Manifest(ctx); err != nil || len(m.Entries) != 0 {
		t.Fatalf("manifest before promote = %+v, %v", m, err)
	}
	tg := mm.Target{SensorType: "vibration"}
	if _, err := r.Promote(ctx, tg, "pump", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Promote(ctx, tg, "pump", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Promote(ctx, tg, "pump", "7"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("promote of unknown version = %v, want ErrNotFound", err)
	}
	man, err := mm.Parse(getObject(t, env, "fleet/manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := man.Find(tg)
	if !ok || e.Active.Version != "2" || len(e.Previous) != 1 || e.Previous[0].Version != "1" || man.Generation != 2 {
		t.Fatalf("manifest after promotes = %+v", man)
	}
	if e.Active.SHA256 != m2.SHA256 || e.Active.Size != int64(len(a2)) || e.Active.Key != m2.Key {
		t.Fatalf("active ref %+v does not describe %+v", e.Active, m2)
	}

	now, removed, err := r.Rollback(ctx, tg)
	if err != nil || now.Version != "1" || removed.Version != "2" {
		t.Fatalf("rollback = %v, %v, %v", now, removed, err)
	}
	if _, _, err := r.Rollback(ctx, tg); !errors.Is(err, mm.ErrNoPrevious) {
		t.Fatalf("second rollback = %v, want ErrNoPrevious", err)
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		V       string
		State   string
		Targets []string
	}
	var got []row
	for _, m := range list {
		got = append(got, row{m.Version, m.State, m.Targets})
	}
	want := []row{{"2", "retired", []string{}}, {"1", "active", []string{"type=vibration"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("registry states (-want +got):\n%s", diff)
	}
	if !bytes.Contains(list[1].Training, []byte(`"source": "test-10"`)) {
		t.Fatalf("training record = %s, want the artifact's", list[1].Training)
	}
	if _, ok := list[1].Metrics["train_alarm_rate"]; !ok {
		t.Fatalf("metrics = %v, want the artifact's train_alarm_rate", list[1].Metrics)
	}
}

// TestManifestWriteIsConditional checks that a writer holding a stale
// ETag cannot overwrite a newer manifest, on the real server.
func TestManifestWriteIsConditional(t *testing.T) {
	t.Parallel()
	r, _ := newRegistry(t)
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)
	if _, err := r.Publish(ctx, signed(t, priv, "m", "1", 5), []ed25519.PublicKey{pub}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Promote(ctx, mm.Target{}, "m", "1"); err != nil {
		t.Fatal(err)
	}
	m, etag, err := r.readManifest(ctx)
	if err != nil || etag == "" {
		t.Fatalf("read manifest: etag %q, %v", etag, err)
	}
	m.Generation++
	if err := r.writeManifest(ctx, m, etag); err != nil {
		t.Fatalf("write with current etag: %v", err)
	}
	m.Generation++
	if err := r.writeManifest(ctx, m, etag); err == nil {
		t.Fatal("write with a stale etag succeeded; the server ignored If-Match")
	}
	if err := r.writeManifest(ctx, m, ""); err == nil {
		t.Fatal("create over an existing manifest succeeded; the server ignored If-None-Match")
	}
}

// TestConcurrentPromotesLoseNothing promotes to many targets at once from
// separate registries (as separate collector processes would): every
// promotion must be in the final manifest.
func TestConcurrentPromotesLoseNothing(t *testing.T) {
	t.Parallel()
	r, env := newRegistry(t)
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)
	if _, err := r.Publish(ctx, signed(t, priv, "m", "1", 1), []ed25519.PublicKey{pub}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		other, err := New(objstore.S3{Client: env.Client, Bucket: env.Bucket}, r.db, Options{Prefix: "fleet"})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := other.Promote(ctx, mm.Target{Edge: fmt.Sprintf("edge-%d", i)}, "m", "1")
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("promote: %v", err)
		}
	}
	m, err := mm.Parse(getObject(t, env, "fleet/manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != n || m.Generation != n {
		t.Fatalf("manifest has %d entries, generation %d; want %d and %d", len(m.Entries), m.Generation, n, n)
	}
}
