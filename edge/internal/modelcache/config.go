package modelcache

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/models/artifact"
	"github.com/smartmaint/smartmaint/shared/objstore"
)

// Config is the `models:` section of the edge configuration. The models
// come from an S3 bucket or from a local directory (Dir) with the same
// layout, which `sm-collector models publish --dir` writes. With neither
// the model cache is off and the edge scores with its built-in detectors
// only. Example (S3):
//
//	models:
//	  endpoint: https://s3.plant.example:9000
//	  bucket: smartmaint-models
//	  prefix: fleet/
//	  credentials_file: /etc/smartmaint/s3.cred   # or SM_EDGE_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY
//	  poll_interval: 1m
//	  cache_dir: /var/lib/smartmaint/models
//	  trusted_keys: ["ed25519:3q2+7w..."]
//	  guard: {window: 10m, min_readings: 200, max_flag_share: 0.2}
//
// Example (local directory; the manifest is re-read every poll and its
// SHA-256 serves as the ETag, so an unchanged manifest applies nothing):
//
//	models:
//	  dir: /srv/smartmaint/models
//	  trusted_keys: ["ed25519:3q2+7w..."]
type Config struct {
	// Dir is a local directory holding the manifest and artifacts (the
	// bucket's layout, under Prefix). It is the alternative to Bucket:
	// give one or the other.
	Dir string `yaml:"dir"`
	// Endpoint is the S3 endpoint URL (e.g. https://minio.plant:9000);
	// empty means AWS S3 for Region.
	Endpoint string `yaml:"endpoint"`
	// Bucket and Prefix locate the manifest and artifacts (see
	// collector/internal/modelreg/FORMAT.md).
	Bucket string `yaml:"bucket"`
	Prefix string `yaml:"prefix"`
	// Region to sign requests for; S3-compatible servers usually accept
	// the default us-east-1.
	Region string `yaml:"region"`
	// PathStyle selects path-style addressing (required by most
	// S3-compatible servers). Default true when Endpoint is set.
	PathStyle *bool `yaml:"path_style"`
	// CredentialsFile holds "access_key_id=…" and "secret_access_key=…"
	// lines. When empty, the environment variables
	// SM_EDGE_S3_ACCESS_KEY_ID and SM_EDGE_S3_SECRET_ACCESS_KEY are used.
	// Credentials are never written in the YAML itself.
	CredentialsFile string `yaml:"credentials_file"`
	// PollInterval is how often the manifest is checked (a conditional
	// GET: an unchanged manifest costs one small 304 response).
	PollInterval time.Duration `yaml:"poll_interval"`
	// CacheDir holds verified artifacts and the last good state. Empty
	// means <data_dir>/models, filled in by the caller.
	CacheDir string `yaml:"cache_dir"`
	// TrustedKeys are Ed25519 public keys ("ed25519:" + standard base64,
	// as in public key files); an artifact signed by any other key is
	// refused. Public keys are not secrets, so they may be inline.
	TrustedKeys []string `yaml:"trusted_keys"`
	// Guard rolls back a new model that flags too much at first.
	Guard GuardPolicy `yaml:"guard"`
}

// Environment variables read for credentials when no file is configured.
const (
	EnvAccessKey = "SM_EDGE_S3_ACCESS_KEY_ID"
	EnvSecretKey = "SM_EDGE_S3_SECRET_ACCESS_KEY"
)

// DefaultPollInterval balances how fast a promotion reaches the fleet
// against request volume: a minute is far below any model's useful life,
// and a 304 costs a few hundred bytes.
const DefaultPollInterval = time.Minute

// minPollInterval stops a typo from hammering the server.
const minPollInterval = time.Second

// DefaultConfig returns the defaults (cache disabled until a bucket or a
// directory is set).
func DefaultConfig() Config {
	return Config{Region: "us-east-1", PollInterval: DefaultPollInterval, Guard: DefaultGuardPolicy()}
}

// Enabled reports whether a bucket or a directory is configured.
func (c Config) Enabled() bool { return c.Bucket != "" || c.Dir != "" }

// Validate returns every problem in c, each prefixed with its field path
// under "models.". It does no network or file I/O beyond nothing: the
// credentials file is read by Credentials.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("models.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("endpoint", "%q is not an http(s) URL", c.Endpoint)
		} else if u.User != nil {
			add("endpoint", "credentials must not be in the URL; use credentials_file or %s/%s", EnvAccessKey, EnvSecretKey)
		}
	}
	if c.Dir != "" {
		for _, s3 := range []struct{ field, value string }{{"bucket", c.Bucket}, {"endpoint", c.Endpoint}, {"credentials_file", c.CredentialsFile}} {
			if s3.value != "" {
				add("dir", "and models.%s are alternatives (a local directory or S3); remove one", s3.field)
			}
		}
	}
	if !c.Enabled() {
		if c.Endpoint != "" || len(c.TrustedKeys) > 0 {
			add("bucket", "is empty but other model settings are given; set a bucket (or dir) or remove the section")
		}
		return errors.Join(errs...)
	}
	if c.PollInterval < minPollInterval {
		add("poll_interval", "%s is below the minimum %s", c.PollInterval, minPollInterval)
	}
	if c.Region == "" {
		add("region", "is empty")
	}
	if c.CacheDir == "" {
		add("cache_dir", "is empty")
	}
	if len(c.TrustedKeys) == 0 {
		add("trusted_keys", "is empty: every artifact would be refused; add the publisher's Ed25519 public key")
	}
	for i, k := range c.TrustedKeys {
		if _, err := ParsePublicKey(k); err != nil {
			add(fmt.Sprintf("trusted_keys[%d]", i), "%v", err)
		}
	}
	if err := c.Guard.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("models.guard: %w", err))
	}
	return errors.Join(errs...)
}

// ParsePublicKey decodes a trusted key as written in the config: the
// standard base64 of the 32-byte Ed25519 key, optionally prefixed
// "ed25519:" (the form of public key files, models/artifact/FORMAT.md).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	return artifact.ParsePublicKey([]byte(strings.TrimSpace(s)))
}

// PublicKeys decodes TrustedKeys (call Validate first).
func (c Config) PublicKeys() ([]ed25519.PublicKey, error) {
	keys := make([]ed25519.PublicKey, 0, len(c.TrustedKeys))
	for i, k := range c.TrustedKeys {
		pk, err := ParsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("models.trusted_keys[%d]: %w", i, err)
		}
		keys = append(keys, pk)
	}
	return keys, nil
}

// Credentials returns the access key pair from CredentialsFile or, when
// none is configured, from the environment (getenv is os.Getenv in
// production). Errors never contain the secret.
func (c Config) Credentials(getenv func(string) string) (access, secret string, err error) {
	if c.CredentialsFile == "" {
		access, secret = getenv(EnvAccessKey), getenv(EnvSecretKey)
		if access == "" || secret == "" {
			return "", "", fmt.Errorf("models: no S3 credentials: set models.credentials_file or both %s and %s", EnvAccessKey, EnvSecretKey)
		}
		return access, secret, nil
	}
	data, err := os.ReadFile(c.CredentialsFile)
	if err != nil {
		return "", "", fmt.Errorf("models.credentials_file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		switch k = strings.TrimSpace(k); {
		case !ok:
			return "", "", fmt.Errorf("%s:%d: want key=value", c.CredentialsFile, line)
		case k == "access_key_id":
			access = strings.TrimSpace(v)
		case k == "secret_access_key":
			secret = strings.TrimSpace(v)
		default:
			return "", "", fmt.Errorf("%s:%d: unknown key %q (want access_key_id or secret_access_key)", c.CredentialsFile, line, k)
		}
	}
	if access == "" || secret == "" {
		return "", "", fmt.Errorf("%s: needs both access_key_id and secret_access_key", c.CredentialsFile)
	}
	return access, secret, nil
}

// UsePathStyle resolves PathStyle's default.
func (c Config) UsePathStyle() bool {
	if c.PathStyle != nil {
		return *c.PathStyle
	}
	return c.Endpoint != ""
}

// FromConfig builds a Cache for edgeID from the `models:` section: the
// directory store, or the S3 client (credentials via Config.Credentials
// with getenv, normally os.Getenv), the trusted keys and the artifact
// verifier. Call Validate first. reg, logger and onChange may be nil.
func FromConfig(c Config, edgeID string, getenv func(string) string, reg prometheus.Registerer, logger *slog.Logger, onChange func(*ActiveSet)) (*Cache, error) {
	keys, err := c.PublicKeys()
	if err != nil {
		return nil, err
	}
	o := Options{
		EdgeID: edgeID, Dir: c.CacheDir, Prefix: c.Prefix, PollInterval: c.PollInterval,
		Verifier: ArtifactVerifier{Trusted: keys}, Registerer: reg, Logger: logger, OnChange: onChange,
	}
	if c.Dir != "" {
		o.Store = objstore.Dir{Root: c.Dir}
		return New(o)
	}
	access, secret, err := c.Credentials(getenv)
	if err != nil {
		return nil, err
	}
	so := s3.Options{
		Region:       c.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(access, secret, ""),
		UsePathStyle: c.UsePathStyle(),
	}
	if c.Endpoint != "" {
		so.BaseEndpoint = aws.String(c.Endpoint)
	}
	o.Store = objstore.S3{Client: s3.New(so), Bucket: c.Bucket}
	return New(o)
}
