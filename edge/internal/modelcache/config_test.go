package modelcache

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/models/artifact"
	mm "github.com/smartmaint/smartmaint/shared/modelmanifest"
)

func TestConfigValidate(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	key := base64.StdEncoding.EncodeToString(pub)
	good := DefaultConfig()
	good.Endpoint, good.Bucket, good.CacheDir, good.TrustedKeys = "http://127.0.0.1:7070", "models", "/var/lib/sm/models", []string{key}

	cases := []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; none means valid
	}{
		{"good", func(*Config) {}, nil},
		{"disabled by default", func(c *Config) { *c = DefaultConfig() }, nil},
		{"settings without bucket", func(c *Config) { c.Bucket = "" }, []string{"models.bucket"}},
		{"everything wrong", func(c *Config) {
			c.Endpoint = "ftp://x"
			c.PollInterval = time.Millisecond
			c.CacheDir = ""
			c.TrustedKeys = []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("short"))}
			c.Guard.MaxFlagShare = 0
		}, []string{"models.endpoint", "models.poll_interval", "models.cache_dir", "models.trusted_keys[0]: public key", "models.trusted_keys[1]: public key", "models.guard: max_flag_share"}},
		{"credentials in URL", func(c *Config) { c.Endpoint = "https://AKIA:secret@s3.example" }, []string{"must not be in the URL"}},
		{"no trusted keys", func(c *Config) { c.TrustedKeys = nil }, []string{"models.trusted_keys: is empty"}},
		{"directory instead of S3", func(c *Config) { c.Endpoint, c.Bucket, c.Dir = "", "", "/srv/models" }, nil},
		{"directory and bucket", func(c *Config) { c.Dir = "/srv/models" }, []string{
			"models.dir: and models.bucket are alternatives", "models.dir: and models.endpoint are alternatives"}},
		{"directory without keys", func(c *Config) { c.Endpoint, c.Bucket, c.Dir, c.TrustedKeys = "", "", "/srv/models", nil }, []string{"models.trusted_keys: is empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.edit(&cfg)
			err := cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") && strings.Contains(err.Error(), "AKIA") {
				t.Errorf("error leaks the credentials: %v", err)
			}
		})
	}
}

func TestCredentials(t *testing.T) {
	env := map[string]string{EnvAccessKey: "ak", EnvSecretKey: "sk"}
	a, s, err := Config{}.Credentials(func(k string) string { return env[k] })
	if err != nil || a != "ak" || s != "sk" {
		t.Fatalf("from env: %q %q %v", a, s, err)
	}
	if _, _, err := (Config{}).Credentials(func(string) string { return "" }); err == nil {
		t.Fatal("missing credentials accepted")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "s3.cred")
	os.WriteFile(file, []byte("# plant S3\naccess_key_id = fk\nsecret_access_key=fs3cr3t\n"), 0o600)
	a, s, err = Config{CredentialsFile: file}.Credentials(func(string) string { return "" })
	if err != nil || a != "fk" || s != "fs3cr3t" {
		t.Fatalf("from file: %q %q %v", a, s, err)
	}
	os.WriteFile(file, []byte("access_key_id=fk\npassword=fs3cr3t\n"), 0o600)
	_, _, err = Config{CredentialsFile: file}.Credentials(func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), ":2: unknown key") || strings.Contains(err.Error(), "fs3cr3t") {
		t.Fatalf("bad file error = %v", err)
	}
}

func TestFromConfigPolls(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.promote(mm.Target{}, f.publish("m", nil))
	cfg := DefaultConfig()
	cfg.Endpoint, cfg.Bucket, cfg.Prefix, cfg.CacheDir = f.env.Endpoint, f.env.Bucket, "fleet/", t.TempDir()
	cfg.TrustedKeys = []string{artifact.FormatPublicKey(f.pub)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvAccessKey: f.env.AccessKey, EnvSecretKey: f.env.SecretKey}
	c, err := FromConfig(cfg, "e1", func(k string) string { return env[k] }, prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Poll(context.Background()); res != Changed {
		t.Fatalf("poll: %s %v", res, err)
	}
	if got := modelFor(t, c, "any", "any"); got != "m@1" {
		t.Fatalf("active: %s", got)
	}
}
