package modelreg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

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
	r, err := New(env.Client, pool, Options{Bucket: env.Bucket, Prefix: "fleet"})
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
	a1, a2 := []byte("artifact one"), []byte("artifact two")

	m1, err := r.Publish(ctx, a1, Meta{Name: "pump", Kind: "ewma", Metrics: []byte(`{"f1":0.9}`)})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(a1)
	if m1.Version != 1 || m1.SHA256 != hex.EncodeToString(sum[:]) || m1.Key != "fleet/artifacts/sha256/"+m1.SHA256 {
		t.Fatalf("published model = %+v", m1)
	}
	if got := getObject(t, env, m1.Key); !bytes.Equal(got, a1) {
		t.Fatalf("artifact in S3 = %q, want %q", got, a1)
	}
	// Same bytes again: idempotent. Other bytes for the same version: refused.
	if again, err := r.Publish(ctx, a1, Meta{Name: "pump", Version: 1, Kind: "ewma"}); err != nil || again.Version != 1 {
		t.Fatalf("re-publish = %+v, %v", again, err)
	}
	if _, err := r.Publish(ctx, a2, Meta{Name: "pump", Version: 1}); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting publish error = %v, want ErrConflict", err)
	}
	m2, err := r.Publish(ctx, a2, Meta{Name: "pump", Kind: "ewma"})
	if err != nil || m2.Version != 2 {
		t.Fatalf("second publish = %+v, %v", m2, err)
	}

	// Nothing is promoted yet: no manifest object.
	if m, err := r.Manifest(ctx); err != nil || len(m.Entries) != 0 {
		t.Fatalf("manifest before promote = %+v, %v", m, err)
	}
	tg := mm.Target{SensorType: "vibration"}
	if _, err := r.Promote(ctx, tg, "pump", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Promote(ctx, tg, "pump", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Promote(ctx, tg, "pump", 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("promote of unknown version = %v, want ErrNotFound", err)
	}
	man, err := mm.Parse(getObject(t, env, "fleet/manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := man.Find(tg)
	if !ok || e.Active.Version != 2 || len(e.Previous) != 1 || e.Previous[0].Version != 1 || man.Generation != 2 {
		t.Fatalf("manifest after promotes = %+v", man)
	}
	if e.Active.SHA256 != m2.SHA256 || e.Active.Size != int64(len(a2)) || e.Active.Key != m2.Key {
		t.Fatalf("active ref %+v does not describe %+v", e.Active, m2)
	}

	now, removed, err := r.Rollback(ctx, tg)
	if err != nil || now.Version != 1 || removed.Version != 2 {
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
		V       int
		State   string
		Targets []string
	}
	var got []row
	for _, m := range list {
		got = append(got, row{m.Version, m.State, m.Targets})
	}
	want := []row{{2, "retired", []string{}}, {1, "active", []string{"type=vibration"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("registry states (-want +got):\n%s", diff)
	}
	if string(list[1].Metrics) != `{"f1": 0.9}` {
		t.Fatalf("metrics = %s", list[1].Metrics)
	}
}

// TestManifestWriteIsConditional checks that a writer holding a stale
// ETag cannot overwrite a newer manifest, on the real server.
func TestManifestWriteIsConditional(t *testing.T) {
	t.Parallel()
	r, _ := newRegistry(t)
	ctx := context.Background()
	if _, err := r.Publish(ctx, []byte("x"), Meta{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Promote(ctx, mm.Target{}, "m", 1); err != nil {
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
