package mqttsub

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/edge/internal/config/strictyaml"
)

// DefaultPasswordEnv is read for the broker password when neither
// password_file nor password_env is configured.
const DefaultPasswordEnv = "SM_EDGE_MQTT_PASSWORD"

// Config is the broker section of the edge config.
type Config struct {
	// URL of the broker: tcp:// or mqtt:// (plain), ssl://, tls:// or
	// mqtts:// (TLS), ws:// or wss://.
	URL string `yaml:"url"`
	// ClientID is fixed so the broker keeps the session across restarts;
	// default "sm-edge-<edge_id>".
	ClientID string `yaml:"client_id,omitempty"`
	// Username for the broker; the password comes from PasswordFile or the
	// environment variable PasswordEnv (default SM_EDGE_MQTT_PASSWORD),
	// never from this file.
	Username     string `yaml:"username,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
	PasswordEnv  string `yaml:"password_env,omitempty"`
	TLS          TLS    `yaml:"tls,omitempty"`
	// CleanSession false (default) keeps the session at the broker, so QoS
	// 1/2 messages published while the agent is away are delivered later.
	CleanSession bool `yaml:"clean_session,omitempty"`
	// KeepAlive is the MQTT keep-alive interval (default 30s).
	KeepAlive time.Duration `yaml:"keep_alive,omitempty"`
	// ConnectTimeout bounds one connection attempt (default 10s).
	ConnectTimeout time.Duration `yaml:"connect_timeout,omitempty"`
	// Reconnect is the capped exponential backoff between attempts.
	Reconnect Backoff `yaml:"reconnect,omitempty"`
	// Workers map and hand over messages concurrently (default 4).
	Workers int `yaml:"workers,omitempty"`
	// Queue is how many received messages may wait for a worker (default
	// 4096); when full, reading from the broker pauses (backpressure).
	Queue int `yaml:"queue,omitempty"`
	// MaxBatch is how many queued messages a worker maps and writes in one
	// Write call (default 512).
	MaxBatch int `yaml:"max_batch,omitempty"`
	// DrainTimeout bounds how long shutdown waits for in-flight messages
	// to be written and acknowledged (default 15s).
	DrainTimeout time.Duration `yaml:"drain_timeout,omitempty"`
}

// TLS configures TLS and mutual TLS to the broker.
type TLS struct {
	// CAFile verifies the broker (PEM); default: the system roots.
	CAFile string `yaml:"ca_file,omitempty"`
	// CertFile and KeyFile are the client certificate for mTLS (PEM).
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `yaml:"server_name,omitempty"`
	// InsecureSkipVerify disables verification of the broker: testing only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty"`
}

// Backoff is a capped exponential backoff: Initial, doubling up to Max.
type Backoff struct {
	Initial time.Duration `yaml:"initial,omitempty"`
	Max     time.Duration `yaml:"max,omitempty"`
}

// Default returns the broker defaults.
func Default() Config {
	return Config{
		URL:            "tcp://127.0.0.1:1883",
		KeepAlive:      30 * time.Second,
		ConnectTimeout: 10 * time.Second,
		Reconnect:      Backoff{Initial: time.Second, Max: 30 * time.Second},
		Workers:        4,
		Queue:          4096,
		MaxBatch:       512,
		DrainTimeout:   15 * time.Second,
	}
}

// Delay returns the wait before reconnect attempt n (0-based): Initial·2ⁿ,
// capped at Max.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Initial
	if d <= 0 {
		d = time.Second
	}
	max := b.Max
	if max <= 0 {
		max = 30 * time.Second
	}
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// IsTLS reports whether the URL's scheme uses TLS.
func (c *Config) IsTLS() bool {
	u, err := url.Parse(c.URL)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "ssl", "tls", "mqtts", "wss":
		return true
	}
	return false
}

// Validate checks the section offline (files exist and parse; no network).
// Errors are "path: message".
func (c *Config) Validate() error {
	var errs []error
	add := func(p, f string, a ...any) { errs = append(errs, strictyaml.Errorf(p, f, a...)) }
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		add("url", "required, e.g. tcp://broker.plant.local:1883")
	case err != nil:
		add("url", "not a URL: %v", err)
	default:
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			add("url", "scheme %q not supported (tcp, mqtt, ssl, tls, mqtts, ws, wss)", u.Scheme)
		}
		if u.User != nil {
			add("url", "must not contain credentials; use username and password_file")
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			add("url", "needs host:port, e.g. tcp://broker:1883")
		}
	}
	if strings.ContainsAny(c.ClientID, "+#/") {
		add("client_id", "must not contain +, # or /")
	}
	if c.PasswordFile != "" {
		if err := checkReadable(c.PasswordFile); err != nil {
			add("password_file", "%v", err)
		}
		if c.PasswordEnv != "" {
			add("password_env", "set either password_file or password_env, not both")
		}
	}
	if (c.PasswordFile != "" || c.PasswordEnv != "") && c.Username == "" {
		add("username", "required when a password is configured")
	}
	errs = append(errs, c.TLS.validate(c.IsTLS()))
	if c.KeepAlive < time.Second && c.KeepAlive != 0 {
		add("keep_alive", "must be at least 1s (got %v)", c.KeepAlive)
	}
	if c.ConnectTimeout < 0 {
		add("connect_timeout", "must not be negative")
	}
	if c.Reconnect.Initial < 0 || c.Reconnect.Max < 0 {
		add("reconnect", "durations must not be negative")
	}
	if c.Reconnect.Initial > 0 && c.Reconnect.Max > 0 && c.Reconnect.Initial > c.Reconnect.Max {
		add("reconnect.initial", "%v is above reconnect.max %v", c.Reconnect.Initial, c.Reconnect.Max)
	}
	if c.Workers < 1 || c.Workers > 256 {
		add("workers", "must be 1–256 (got %d)", c.Workers)
	}
	if c.Queue < 1 || c.Queue > 1<<20 {
		add("queue", "must be 1–1048576 (got %d)", c.Queue)
	}
	if c.MaxBatch < 1 || c.MaxBatch > 65536 {
		add("max_batch", "must be 1–65536 (got %d)", c.MaxBatch)
	}
	if c.DrainTimeout < 0 {
		add("drain_timeout", "must not be negative")
	}
	return errors.Join(errs...)
}

func (t TLS) validate(isTLS bool) error {
	var errs []error
	add := func(p, f string, a ...any) { errs = append(errs, strictyaml.Errorf(p, f, a...)) }
	set := t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
	if set && !isTLS {
		add("tls", "set, but the broker URL is not a TLS URL (use ssl://, tls://, mqtts:// or wss://)")
	}
	if t.CAFile != "" {
		if data, err := os.ReadFile(t.CAFile); err != nil {
			add("tls.ca_file", "%v", cleanFileErr(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
			add("tls.ca_file", "%s holds no PEM certificate", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add("tls", "cert_file and key_file must be set together")
	} else if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			add("tls.cert_file", "cannot load the client certificate and key: %v", cleanFileErr(err))
		}
	}
	return errors.Join(errs...)
}

func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return cleanFileErr(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return cleanFileErr(err)
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

func cleanFileErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot %s %s: %v", pe.Op, pe.Path, pe.Err)
	}
	return err
}

// Password returns the broker password from the file or environment
// variable; "" when none is configured.
func (c *Config) Password() (string, error) {
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("read broker password file: %w", cleanFileErr(err))
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	env := c.PasswordEnv
	if env == "" {
		env = DefaultPasswordEnv
	}
	v, ok := os.LookupEnv(env)
	if c.PasswordEnv != "" && (!ok || v == "") {
		return "", fmt.Errorf("broker password: environment variable %s is not set", env)
	}
	return v, nil
}

// TLSConfig builds the TLS configuration; nil for a plain URL.
func (c *Config) TLSConfig() (*tls.Config, error) {
	if !c.IsTLS() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify} //nolint:gosec // opt-in for tests
	if c.TLS.CAFile != "" {
		data, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read broker CA: %w", cleanFileErr(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("broker CA %s holds no PEM certificate", c.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", cleanFileErr(err))
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
