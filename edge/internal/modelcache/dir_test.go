package modelcache

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/objstore"
)

// A directory store nobody has published to yet is not a fault: Poll
// says ErrNoManifest (Run logs it once), while a manifest naming a
// missing artifact is a different, retryable error.
func TestDirStoreWithoutManifest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := objstore.Dir{Root: filepath.Join(t.TempDir(), "models")}
	c, err := New(Options{EdgeID: "e1", Dir: t.TempDir(), Store: store, Verifier: ArtifactVerifier{Trusted: []ed25519.PublicKey{make(ed25519.PublicKey, 32)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Poll(ctx); res != PollError || !errors.Is(err, ErrNoManifest) {
		t.Fatalf("Poll of an empty store = %s, %v; want ErrNoManifest", res, err)
	}

	missing := "ab" + strings.Repeat("0", 62)
	man := mm.New()
	man.Promote(mm.Target{SensorType: "flow"}, mm.Ref{Name: "m", Version: "1", Kind: "ensemble",
		Key: mm.ArtifactKey("", missing), SHA256: missing, Size: 10})
	data, err := man.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, mm.ManifestKey, data, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Poll(ctx)
	if res != PollError || err == nil || errors.Is(err, ErrNoManifest) {
		t.Fatalf("Poll with a missing artifact = %s, %v; want a download error", res, err)
	}
	if got := len(c.Active().Entries); got != 0 {
		t.Fatalf("%d models active after a failed download", got)
	}
}
