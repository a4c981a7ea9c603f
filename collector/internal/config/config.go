// Package config loads the sm-collector configuration: a strict YAML file
// (unknown keys are errors, reported with file:line), defaults for
// everything left out, environment overrides (DATABASE_URL and
// SM_COLLECTOR_*), and Validate, which reports every problem at once.
//
// Load and Validate do no network I/O; they check shapes and ranges only.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// CurrentVersion is the only config file version this build reads.
const CurrentVersion = 1

// Config is the whole collector configuration.
type Config struct {
	// Version must be CurrentVersion.
	Version int `yaml:"version"`
	// Listen is the API's address, e.g. ":8080".
	Listen string `yaml:"listen"`
	// ShutdownTimeout bounds the graceful drain of in-flight requests.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Log             Log           `yaml:"log"`
	Database        Database      `yaml:"database"`
	TLS             TLS           `yaml:"tls"`
	Metrics         Metrics       `yaml:"metrics"`
	Limits          Limits        `yaml:"limits"`
	RateLimits      RateLimits    `yaml:"rate_limits"`
	Ingest          Ingest        `yaml:"ingest"`
	Alerts          Alerts        `yaml:"alerts"`
	Notify          Notify        `yaml:"notify"`
}

// Log configures the process logger.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json (production) or text.
	Format string `yaml:"format"`
}

// Database configures PostgreSQL.
type Database struct {
	// URL is the PostgreSQL connection URL. Prefer the DATABASE_URL
	// environment variable: it may hold a password.
	URL string `yaml:"url"`
	// Timescale is auto (use TimescaleDB when the extension is available),
	// require (fail without it) or off.
	Timescale string `yaml:"timescale"`
	// Retention is how long readings are kept.
	Retention time.Duration `yaml:"retention"`
	// MigrateOnStart runs the embedded migrations when serve starts.
	MigrateOnStart bool `yaml:"migrate_on_start"`
	// MaxConns bounds the connection pool; 0 lets pgx choose.
	MaxConns int `yaml:"max_conns"`
	// PartitionCheck is how often serve creates partitions ahead and drops
	// expired ones on plain PostgreSQL.
	PartitionCheck time.Duration `yaml:"partition_check"`
}

// TLS turns on HTTPS when CertFile and KeyFile are set.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the CAs that sign edge client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is none, optional (verify a certificate when one is
	// presented) or require (mTLS for every client).
	ClientAuth string `yaml:"client_auth"`
}

// Metrics configures /metrics.
type Metrics struct {
	// Listen, when set, serves /metrics without credentials on its own
	// address (for a private network). When empty, /metrics is served on
	// the API address and needs a reader's credential.
	Listen string `yaml:"listen"`
}

// Limits bound what one request may cost.
type Limits struct {
	IngestBodyBytes    int64 `yaml:"ingest_body_bytes"`
	IngestDecodedBytes int   `yaml:"ingest_decoded_bytes"`
	StatusBodyBytes    int64 `yaml:"status_body_bytes"`
	PageDefault        int   `yaml:"page_default"`
	PageMax            int   `yaml:"page_max"`
	MaxBuckets         int   `yaml:"max_buckets"`
	MaxLatestSensors   int   `yaml:"max_latest_sensors"`
}

// Rate is one token bucket: PerSecond on average, bursts of Burst.
// PerSecond 0 disables the limit.
type Rate struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// RateLimits are per credential.
type RateLimits struct {
	Edge   Rate `yaml:"edge"`
	APIKey Rate `yaml:"api_key"`
}

// Ingest configures validation and backpressure of batch ingest
// (collector/internal/ingest.Config).
type Ingest struct {
	// FutureTolerance is how far past server time a timestamp may be
	// (clock-offset tolerance).
	FutureTolerance time.Duration `yaml:"future_tolerance"`
	// AutoRegister is edge (an edge's unknown sensors are registered on
	// first sight, owned by that edge) or off (unknown sensors are
	// rejected).
	AutoRegister string `yaml:"auto_register"`
	// MaxInFlight bounds concurrent batch writes (each holds a database
	// connection); MaxQueue batches may wait QueueTimeout for a slot, and
	// beyond that edges get 503 with RetryAfter.
	MaxInFlight  int           `yaml:"max_in_flight"`
	MaxQueue     int           `yaml:"max_queue"`
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// WriteTimeout: a batch transaction slower than this is rolled back and
	// the edge told to retry (503).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	RetryAfter   time.Duration `yaml:"retry_after"`
	// SensorCacheTTL is how long sensor metadata is cached.
	SensorCacheTTL time.Duration `yaml:"sensor_cache_ttl"`
}

// Default returns the configuration used for everything a file leaves out.
// Defaults favour safety: plain HTTP only on localhost-facing setups is
// the operator's choice, but every endpoint needs credentials regardless.
func Default() Config {
	return Config{
		Version:         CurrentVersion,
		Listen:          ":8080",
		ShutdownTimeout: 30 * time.Second,
		Log:             Log{Level: "info", Format: "json"},
		Database: Database{
			Timescale: "auto",
			// 30 days, as the store's default: see store.DefaultRetention.
			Retention:      30 * 24 * time.Hour,
			MigrateOnStart: false,
			PartitionCheck: time.Hour,
		},
		TLS: TLS{ClientAuth: "none"},
		Limits: Limits{
			// 8 MiB compressed is several times an edge's largest batch;
			// 64 MiB decoded caps a decompression bomb.
			IngestBodyBytes:    8 << 20,
			IngestDecodedBytes: 64 << 20,
			StatusBodyBytes:    64 << 10,
			PageDefault:        100,
			PageMax:            1000,
			MaxBuckets:         10000,
			MaxLatestSensors:   200,
		},
		RateLimits: RateLimits{
			// An edge sends a batch every second or so and drains its backlog
			// in bursts; 50/s with a burst of 100 lets a backlog drain fast
			// while one misbehaving edge cannot starve the others.
			Edge: Rate{PerSecond: 50, Burst: 100},
			// Dashboards poll a handful of endpoints every few seconds.
			APIKey: Rate{PerSecond: 20, Burst: 40},
		},
		// Same values as the ingest package's defaults; see there for why.
		Ingest: Ingest{
			FutureTolerance: 5 * time.Minute,
			AutoRegister:    "edge",
			MaxInFlight:     4,
			MaxQueue:        16,
			QueueTimeout:    2 * time.Second,
			WriteTimeout:    10 * time.Second,
			RetryAfter:      5 * time.Second,
			SensorCacheTTL:  30 * time.Second,
		},
		Alerts: defaultAlerts(),
		Notify: defaultNotify(),
	}
}

// FieldError is one problem with one setting. Path is the YAML key path
// (e.g. "tls.key_file"); Pos, when known, is "file:line" of the key.
type FieldError struct {
	Pos  string
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Pos != "" {
		return fmt.Sprintf("%s: %s: %s", e.Pos, e.Path, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// Validate checks every setting and returns all problems joined with
// errors.Join (each a *FieldError), or nil.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Version != CurrentVersion {
		bad("version", "must be %d, got %d", CurrentVersion, c.Version)
	}
	checkAddr := func(path, addr string, required bool) {
		if addr == "" {
			if required {
				bad(path, "required")
			}
			return
		}
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(path, "not a host:port address: %v", err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(path, "port %q is not a number from 0 to 65535", port)
		}
	}
	checkAddr("listen", c.Listen, true)
	checkAddr("metrics.listen", c.Metrics.Listen, false)
	if c.Metrics.Listen != "" && c.Metrics.Listen == c.Listen {
		bad("metrics.listen", "must differ from listen (leave it empty to serve /metrics on the API address)")
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	oneOf := func(path, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(path, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
		}
	}
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "json", "text")
	if c.Database.URL == "" {
		bad("database.url", "required (set DATABASE_URL)")
	} else if u, err := url.Parse(c.Database.URL); err != nil {
		// The parse error may echo the URL with its password: do not include it.
		bad("database.url", "not a URL")
	} else if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		bad("database.url", "scheme must be postgres or postgresql, got %q", u.Scheme)
	}
	oneOf("database.timescale", c.Database.Timescale, "auto", "require", "off")
	if c.Database.Retention < time.Hour {
		bad("database.retention", "must be at least 1h, got %s", c.Database.Retention)
	}
	if c.Database.MaxConns < 0 {
		bad("database.max_conns", "must not be negative")
	}
	if c.Database.PartitionCheck < time.Minute {
		bad("database.partition_check", "must be at least 1m, got %s", c.Database.PartitionCheck)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		if c.TLS.CertFile == "" {
			bad("tls.cert_file", "required when tls.key_file is set")
		} else {
			bad("tls.key_file", "required when tls.cert_file is set")
		}
	}
	oneOf("tls.client_auth", c.TLS.ClientAuth, "none", "optional", "require")
	if c.TLS.ClientAuth != "none" {
		if c.TLS.ClientCAFile == "" {
			bad("tls.client_ca_file", "required when tls.client_auth is %s", c.TLS.ClientAuth)
		}
		if c.TLS.CertFile == "" {
			bad("tls.client_auth", "client certificates need HTTPS (tls.cert_file and tls.key_file)")
		}
	}
	positive := func(path string, v int64) {
		if v <= 0 {
			bad(path, "must be positive, got %d", v)
		}
	}
	l := c.Limits
	positive("limits.ingest_body_bytes", l.IngestBodyBytes)
	positive("limits.ingest_decoded_bytes", int64(l.IngestDecodedBytes))
	positive("limits.status_body_bytes", l.StatusBodyBytes)
	positive("limits.page_default", int64(l.PageDefault))
	positive("limits.page_max", int64(l.PageMax))
	positive("limits.max_buckets", int64(l.MaxBuckets))
	positive("limits.max_latest_sensors", int64(l.MaxLatestSensors))
	if l.PageDefault > l.PageMax {
		bad("limits.page_default", "must not exceed limits.page_max (%d)", l.PageMax)
	}
	if l.IngestDecodedBytes > 0 && int64(l.IngestDecodedBytes) < l.IngestBodyBytes {
		bad("limits.ingest_decoded_bytes", "must be at least limits.ingest_body_bytes")
	}
	for path, r := range map[string]Rate{"rate_limits.edge": c.RateLimits.Edge, "rate_limits.api_key": c.RateLimits.APIKey} {
		if r.PerSecond < 0 {
			bad(path+".per_second", "must not be negative")
		}
		if r.PerSecond > 0 && r.Burst < 1 {
			bad(path+".burst", "must be at least 1 when per_second is set")
		}
	}
	in := c.Ingest
	if in.FutureTolerance < 0 {
		bad("ingest.future_tolerance", "must not be negative")
	}
	oneOf("ingest.auto_register", in.AutoRegister, "edge", "off")
	positive("ingest.max_in_flight", int64(in.MaxInFlight))
	if in.MaxQueue < 0 {
		bad("ingest.max_queue", "must not be negative")
	}
	for path, d := range map[string]time.Duration{"ingest.queue_timeout": in.QueueTimeout,
		"ingest.write_timeout": in.WriteTimeout, "ingest.sensor_cache_ttl": in.SensorCacheTTL} {
		if d <= 0 {
			bad(path, "must be positive, got %s", d)
		}
	}
	if in.RetryAfter < time.Second {
		bad("ingest.retry_after", "must be at least 1s, got %s", in.RetryAfter)
	}
	errs = append(errs, c.alertProblems()...)
	slices.SortStableFunc(errs, func(a, b error) int {
		return strings.Compare(a.(*FieldError).Path, b.(*FieldError).Path)
	})
	return errors.Join(errs...)
}

// Load reads the file at path (when path is not ""), applies the
// environment through getenv and validates the result. Errors name the
// file and line of the offending key when it came from the file.
func Load(path string, getenv func(string) string) (Config, error) {
	if path == "" {
		return finish(Default(), "", nil, getenv)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("cannot read config: %w", err)
	}
	return LoadBytes(path, data, getenv)
}

// LoadBytes is Load for a file already read; name is used in errors.
func LoadBytes(name string, data []byte, getenv func(string) string) (Config, error) {
	cfg, root, err := Parse(name, data)
	if err != nil {
		return Config{}, err
	}
	return finish(cfg, name, root, getenv)
}

func finish(cfg Config, name string, root *yaml.Node, getenv func(string) string) (Config, error) {
	if err := cfg.ApplyEnv(getenv); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, locate(name, root, err)
	}
	return cfg, nil
}

// Parse decodes one YAML document strictly on top of Default(). It does
// not validate. The returned node is the document, for locating keys.
func Parse(name string, data []byte) (Config, *yaml.Node, error) {
	cfg := Default()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, nil, fmt.Errorf("%s: empty config (want at least \"version: %d\")", name, CurrentVersion)
		}
		return Config{}, nil, fmt.Errorf("%s: %w", name, yamlErr(name, err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, nil, fmt.Errorf("%s: more than one YAML document", name)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return Config{}, nil, fmt.Errorf("%s:%d: the config must be a mapping", name, doc.Line)
	}
	// Decode again with KnownFields: yaml.Node.Decode has no strict mode.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&cfg); err != nil {
		return Config{}, nil, yamlErr(name, err)
	}
	return cfg, &doc, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErr rewrites "line N: msg" from the YAML decoder as "name:N: msg",
// one per line.
func yamlErr(name string, err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var errs []error
	for _, m := range msgs {
		if s := yamlLine.FindStringSubmatch(m); s != nil {
			errs = append(errs, fmt.Errorf("%s:%s: %s", name, s[1], s[2]))
		} else {
			errs = append(errs, fmt.Errorf("%s: %s", name, strings.TrimPrefix(m, "yaml: ")))
		}
	}
	return errors.Join(errs...)
}

// locate adds file:line to each FieldError whose key is in the document.
func locate(name string, root *yaml.Node, err error) error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var fe *FieldError
		if errors.As(e, &fe) && root != nil {
			if line := lineOf(root, fe.Path); line > 0 {
				fe.Pos = name + ":" + strconv.Itoa(line)
			}
		}
	}
	return errors.Join(list...)
}

// lineOf finds the line of the key at a dotted path, or of its deepest
// ancestor present in the document, or 0.
func lineOf(doc *yaml.Node, path string) int {
	if doc == nil || len(doc.Content) == 0 {
		return 0
	}
	n := doc.Content[0]
	line := 0
	for _, key := range strings.Split(path, ".") {
		// "channels[2]": the key, then the item of its sequence.
		idx := -1
		if k, rest, ok := strings.Cut(key, "["); ok {
			if i, err := strconv.Atoi(strings.TrimSuffix(rest, "]")); err == nil {
				key, idx = k, i
			}
		}
		if n.Kind != yaml.MappingNode {
			return 0
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			// The key is absent (a required setting left out): point at
			// its nearest parent that is there.
			return line
		}
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// Environment variables that override the file. DATABASE_URL is the
// conventional name; the others are SM_COLLECTOR_ plus the key path.
const (
	EnvDatabaseURL = "DATABASE_URL"
	EnvPrefix      = "SM_COLLECTOR_"
)

// ApplyEnv overrides settings from the environment: DATABASE_URL, and
// SM_COLLECTOR_ followed by the key path in upper case with _ for . for
// these keys: listen, shutdown_timeout, log.level, log.format,
// database.timescale, database.retention, database.migrate_on_start,
// database.max_conns, tls.cert_file, tls.key_file, tls.client_ca_file,
// tls.client_auth, metrics.listen, ingest.auto_register and
// ingest.max_in_flight (for example SM_COLLECTOR_TLS_CERT_FILE). Empty
// variables are ignored. Bad values are reported by variable name.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	if v := getenv(EnvDatabaseURL); v != "" {
		c.Database.URL = v
	}
	str := func(p *string) func(string) error { return func(v string) error { *p = v; return nil } }
	dur := func(p *time.Duration) func(string) error {
		return func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return errors.New("not a duration such as 30s or 1h")
			}
			*p = d
			return nil
		}
	}
	boolean := func(p *bool) func(string) error {
		return func(v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("not true or false")
			}
			*p = b
			return nil
		}
	}
	integer := func(p *int) func(string) error {
		return func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return errors.New("not an integer")
			}
			*p = n
			return nil
		}
	}
	vars := []struct {
		name string
		set  func(string) error
	}{
		{"LISTEN", str(&c.Listen)},
		{"SHUTDOWN_TIMEOUT", dur(&c.ShutdownTimeout)},
		{"LOG_LEVEL", str(&c.Log.Level)},
		{"LOG_FORMAT", str(&c.Log.Format)},
		{"DATABASE_TIMESCALE", str(&c.Database.Timescale)},
		{"DATABASE_RETENTION", dur(&c.Database.Retention)},
		{"DATABASE_MIGRATE_ON_START", boolean(&c.Database.MigrateOnStart)},
		{"DATABASE_MAX_CONNS", integer(&c.Database.MaxConns)},
		{"TLS_CERT_FILE", str(&c.TLS.CertFile)},
		{"TLS_KEY_FILE", str(&c.TLS.KeyFile)},
		{"TLS_CLIENT_CA_FILE", str(&c.TLS.ClientCAFile)},
		{"TLS_CLIENT_AUTH", str(&c.TLS.ClientAuth)},
		{"METRICS_LISTEN", str(&c.Metrics.Listen)},
		{"INGEST_AUTO_REGISTER", str(&c.Ingest.AutoRegister)},
		{"INGEST_MAX_IN_FLIGHT", integer(&c.Ingest.MaxInFlight)},
	}
	var errs []error
	for _, v := range vars {
		val, ok := lookup(getenv, EnvPrefix+v.name)
		if !ok {
			continue
		}
		if err := v.set(val); err != nil {
			errs = append(errs, fmt.Errorf("environment %s%s: %w", EnvPrefix, v.name, err))
		}
	}
	return errors.Join(errs...)
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// RedactedDatabaseURL returns the database URL with any password masked,
// for logs and error messages.
func (c *Config) RedactedDatabaseURL() string {
	u, err := url.Parse(c.Database.URL)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
