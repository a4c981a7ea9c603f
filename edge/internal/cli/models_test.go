package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/smartmaint/smartmaint/edge/internal/modelcache"
	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	"github.com/smartmaint/smartmaint/models/train"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

func runEdge(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// TestModelsListVerify fills a cache from a real S3 manifest, then
// inspects it with the commands.
func TestModelsListVerify(t *testing.T) {
	t.Parallel()
	env := testenv.S3(t)
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	man := mm.New()
	put := func(key string, data []byte) {
		if _, err := env.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	}
	var refs []mm.Ref
	for _, v := range []string{"1", "2"} {
		m, err := train.Fit([][]float64{{1}, {2}, {3}}, train.Options{Kind: models.NameEWMA, Name: "vib", Version: v, Sensors: []string{"s"}, Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		data, err := artifact.Encode(m, priv)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		ref := mm.Ref{Name: "vib", Version: v, Kind: m.Kind, Key: mm.ArtifactKey("", hex.EncodeToString(sum[:])), SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
		put(ref.Key, data)
		man.Promote(mm.Target{SensorType: "vibration"}, ref)
		b, _ := man.Marshal()
		put(mm.ManifestKey, b)
		refs = append(refs, ref)
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
	}

	out, stderr, code := runEdge(t, "models", "list", "--cache-dir", dir)
	if code != 0 || !strings.Contains(out, "type=vibration  vib@2") || !strings.Contains(out, "vib@1\n") {
		t.Fatalf("list: %d\n%s%s", code, out, stderr)
	}

	keys := t.TempDir()
	keyFile := filepath.Join(keys, "models.pub")
	os.WriteFile(keyFile, []byte(artifact.FormatPublicKey(pub)), 0o600)
	_, stderr, code = runEdge(t, "models", "verify", "--cache-dir", dir, "--trusted-key", keyFile)
	if code != 0 || !strings.Contains(stderr, "2 verified, 0 failed") {
		t.Fatalf("verify: %d\n%s", code, stderr)
	}

	// An untrusted key fails everything; a corrupted file fails its check.
	otherPub, _, _ := ed25519.GenerateKey(nil)
	otherFile := filepath.Join(keys, "other.pub")
	os.WriteFile(otherFile, []byte(artifact.FormatPublicKey(otherPub)), 0o600)
	if _, stderr, code := runEdge(t, "models", "verify", "--cache-dir", dir, "--trusted-key", otherFile); code != 1 || !strings.Contains(stderr, "0 verified, 2 failed") {
		t.Fatalf("verify with an untrusted key: %d\n%s", code, stderr)
	}
	os.WriteFile(filepath.Join(dir, "artifacts", refs[0].SHA256), []byte("garbage"), 0o600)
	_, stderr, code = runEdge(t, "models", "verify", "--cache-dir", dir, "--trusted-key", keyFile)
	if code != 1 || !strings.Contains(stderr, "FAIL type=vibration vib@1") || !strings.Contains(stderr, "1 verified, 1 failed") {
		t.Fatalf("verify of a corrupt cache: %d\n%s", code, stderr)
	}
}
