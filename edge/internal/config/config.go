// Package config loads and validates the sm-edge configuration file.
//
// The file is YAML, decoded strictly (unknown keys are errors), with a
// version field (1). Defaults are applied first, then the file, then
// Validate, which reports every problem at once as "FILE:LINE: field.path:
// message"; Load and Validate never touch the network. Relative paths in
// the file are relative to the file's directory. Secrets are never in the
// file: the broker password comes from a file or an environment variable.
//
// Each component owns the Go struct of its section (a Default function and
// a Validate method returning errors.Join of "path: message" errors, see
// strictyaml), and Config embeds it. To add a section: add one field to
// Config, its default in Default, and one line in Validate.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"go.yaml.in/yaml/v3"

	"github.com/smartmaint/smartmaint/edge/internal/admin"
	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/edge/internal/config/strictyaml"
	"github.com/smartmaint/smartmaint/edge/internal/detect"
	"github.com/smartmaint/smartmaint/edge/internal/forward"
	"github.com/smartmaint/smartmaint/edge/internal/mapping"
	"github.com/smartmaint/smartmaint/edge/internal/modelcache"
	"github.com/smartmaint/smartmaint/edge/internal/mqttsub"
	firmwareconfigs "github.com/smartmaint/smartmaint/firmware-configs"
)

// Version is the config file format version this build reads.
const Version = 1

// minMemoryLimit is the smallest MemoryLimit accepted: less would starve
// the agent, and is most likely a value meant in MiB.
const minMemoryLimit = 16 << 20

// Config is the whole sm-edge configuration.
type Config struct {
	Version int    `yaml:"version"`
	EdgeID  string `yaml:"edge_id"`
	DataDir string `yaml:"data_dir"`
	// MemoryLimit is a soft limit on the Go runtime's memory, in bytes
	// (runtime/debug.SetMemoryLimit, as GOMEMLIMIT): the garbage collector
	// runs more often as the heap approaches it instead of letting the heap
	// grow to twice the live data (GOGC=100). 0 (the default) is automatic
	// (edge/internal/memlimit): 90 % of the cgroup's memory.max under one
	// (systemd MemoryMax=, a container limit), none otherwise; GOMEMLIMIT
	// from the environment replaces it. -1 sets no limit. A limit near the
	// live heap saves memory for CPU (at 1.5x the live heap backlog ingest
	// halved); below the live heap the collector runs almost continuously
	// (it takes at most about half the CPU) and memory still grows past it.
	MemoryLimit int64          `yaml:"memory_limit"`
	Admin       admin.Config   `yaml:"admin"`
	Log         Log            `yaml:"log"`
	Broker      mqttsub.Config `yaml:"broker"`
	// Subscriptions are the topic patterns to subscribe to and decode.
	Subscriptions []mapping.Subscription `yaml:"subscriptions"`
	// Sensors are per-sensor profile overrides, keyed by sensor id.
	Sensors  map[string]mapping.SensorOverride `yaml:"sensors,omitempty"`
	Profiles mapping.ProfilesConfig            `yaml:"profiles,omitempty"`

	// Sections owned by other packages: each has its defaults in Default
	// and one line in Validate.

	// Scoring configures the local anomaly detection (edge/internal/detect).
	Scoring detect.Config `yaml:"scoring"`
	// Buffer is the durable queue (edge/internal/buffer).
	Buffer buffer.Config `yaml:"buffer"`
	// Collector is the uplink (edge/internal/forward).
	Collector forward.Config `yaml:"collector"`
	// Models is the S3 model cache (edge/internal/modelcache); off unless
	// a bucket is set.
	Models modelcache.Config `yaml:"models"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level,omitempty"`
	// Format is json (default) or text.
	Format string `yaml:"format,omitempty"`
}

// Default returns a config with every default set.
func Default() Config {
	return Config{
		Version: Version,
		DataDir: "/var/lib/sm-edge",
		Admin:   admin.Default(),
		Log:     Log{Level: "info", Format: "json"},
		Broker:  mqttsub.Default(),

		Scoring:   detect.DefaultConfig(),
		Buffer:    buffer.Default(),
		Collector: forward.Default(),
		Models:    modelcache.DefaultConfig(),
	}
}

var edgeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks the config on its own (profiles are checked by Check).
// It returns errors.Join of "path: message" errors.
func (c *Config) Validate() error {
	var errs []error
	add := func(p, f string, a ...any) { errs = append(errs, strictyaml.Errorf(p, f, a...)) }
	if c.Version != Version {
		add("version", "must be %d (got %d)", Version, c.Version)
	}
	if !edgeIDRE.MatchString(c.EdgeID) {
		add("edge_id", "required: 1–64 letters, digits, '.', '_' or '-' (got %q)", c.EdgeID)
	}
	if c.DataDir == "" {
		add("data_dir", "required")
	}
	if c.MemoryLimit != 0 && c.MemoryLimit != -1 && c.MemoryLimit < minMemoryLimit {
		add("memory_limit", "must be 0 (automatic), -1 (none) or at least %d bytes (16 MiB); it is in bytes (got %d)", minMemoryLimit, c.MemoryLimit)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "must be debug, info, warn or error (got %q)", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		add("log.format", "must be json or text (got %q)", c.Log.Format)
	}
	errs = append(errs,
		strictyaml.Prefix("admin", c.Admin.Validate()),
		strictyaml.Prefix("broker", c.Broker.Validate()),
		c.Scoring.Validate("scoring"),
		c.Buffer.Validate(),
		c.Collector.Validate(),
		c.Models.Validate(),
	)
	if len(c.Subscriptions) == 0 {
		add("subscriptions", "at least one subscription is required")
	}
	for i, s := range c.Subscriptions {
		errs = append(errs, strictyaml.Prefix(fmt.Sprintf("subscriptions[%d]", i), s.Validate()))
	}
	return errors.Join(errs...)
}

// ClientID returns the effective MQTT client id.
func (c *Config) ClientID() string {
	if c.Broker.ClientID != "" {
		return c.Broker.ClientID
	}
	return mqttsub.DefaultClientID(c.EdgeID)
}

// Load reads, decodes and validates the config file, and loads the
// profiles it uses. It returns the config (possibly partial), the profiles
// and every problem found; the config is usable only when there are none.
func Load(file string) (*Config, mapping.Profiles, strictyaml.Problems) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, strictyaml.Problems{{File: file, Msg: fmt.Sprintf("cannot read config: %v", err)}}
	}
	return Parse(file, data)
}

// Parse is Load for data already read; file names it in problems and
// anchors relative paths.
func Parse(file string, data []byte) (*Config, mapping.Profiles, strictyaml.Problems) {
	cfg := Default()
	root, probs := strictyaml.Decode(file, data, &cfg)
	if root == nil {
		return nil, nil, probs
	}
	base, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		base = filepath.Dir(file)
	}
	cfg.resolvePaths(base)
	// A field that failed to decode is not validated again (its zero value
	// would only add a second, misleading problem).
	decodeFailed := map[string]bool{}
	for _, p := range probs {
		decodeFailed[p.Path] = true
	}
	for _, p := range strictyaml.FromError(file, root, "", cfg.Validate()) {
		if !decodeFailed[p.Path] {
			probs = append(probs, p)
		}
	}
	profiles, pprobs := cfg.loadProfiles()
	probs = append(probs, pprobs...)
	if len(pprobs) == 0 {
		probs = append(probs, strictyaml.FromError(file, root, "", mapping.ValidateProfiles(cfg.Subscriptions, cfg.Sensors, profiles))...)
	}
	sortProblems(probs)
	return &cfg, profiles, probs
}

// loadProfiles loads the built-in profiles and those in the configured
// directories (later ones replace earlier ones of the same name).
func (c *Config) loadProfiles() (mapping.Profiles, strictyaml.Problems) {
	ps := mapping.Profiles{}
	var probs strictyaml.Problems
	if c.Profiles.UseBuiltin() {
		probs = append(probs, mapping.LoadProfiles(ps, firmwareconfigs.Profiles, firmwareconfigs.ProfilesDir, "(built-in)/firmware-configs/profiles")...)
	}
	for _, dir := range c.Profiles.Dirs {
		probs = append(probs, mapping.LoadProfiles(ps, os.DirFS(dir), ".", dir)...)
	}
	return ps, probs
}

func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.Admin.TokenFile)
	abs(&c.Collector.TokenFile)
	abs(&c.Collector.TLS.CAFile)
	abs(&c.Collector.TLS.CertFile)
	abs(&c.Collector.TLS.KeyFile)
	abs(&c.Models.CredentialsFile)
	abs(&c.Models.CacheDir)
	abs(&c.Models.Dir)
	if c.Models.CacheDir == "" && c.DataDir != "" {
		c.Models.CacheDir = filepath.Join(c.DataDir, "models")
	}
	abs(&c.Broker.PasswordFile)
	abs(&c.Broker.TLS.CAFile)
	abs(&c.Broker.TLS.CertFile)
	abs(&c.Broker.TLS.KeyFile)
	for i := range c.Profiles.Dirs {
		abs(&c.Profiles.Dirs[i])
	}
}

func sortProblems(ps strictyaml.Problems) {
	// Stable order: by file, then line, keeping discovery order for ties.
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && less(ps[j], ps[j-1]); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

func less(a, b strictyaml.Problem) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	return a.Line < b.Line
}

// Example returns the annotated example site config (the same file as
// firmware-configs/sites/example-site.yaml).
func Example() []byte {
	b, err := firmwareconfigs.Sites.ReadFile(firmwareconfigs.ExampleSite)
	if err != nil {
		panic(fmt.Sprintf("embedded example config missing: %v", err)) // build defect
	}
	return b
}

// Marshal renders cfg as YAML (for tests and debugging).
func Marshal(cfg *Config) ([]byte, error) { return yaml.Marshal(cfg) }
