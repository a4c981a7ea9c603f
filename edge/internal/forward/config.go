package forward

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// TokenEnv is the environment variable that holds the edge's bearer token
// when Config.TokenFile is empty.
const TokenEnv = "SM_EDGE_TOKEN"

// Config is the `collector:` section of the edge configuration file.
type Config struct {
	// URL is the collector's base URL, e.g. https://collector.example.com.
	URL string `yaml:"url"`
	// TokenFile holds the edge's bearer token (one line). When empty, the
	// token comes from the SM_EDGE_TOKEN environment variable. The token is
	// never written inline in the configuration.
	TokenFile string `yaml:"token_file"`
	// BatchSize is the most records sent in one request.
	BatchSize int `yaml:"batch_size"`
	// Concurrency is how many batches may be in flight at once. More than
	// one hides the round trip on long links (each connection carries one
	// batch at a time); the collector's 429/503 still slows every one.
	Concurrency int `yaml:"concurrency"`
	// BatchDelay is how long the forwarder lets records accumulate after
	// the queue was empty, so that a trickle is not sent one by one. It
	// adds to the latency of live data; the wait ends early once
	// BatchSize/20 records are waiting, so under load it adds only the
	// time such a batch takes to gather.
	BatchDelay time.Duration `yaml:"batch_delay"`
	// StatusInterval is the period of status reports; 0 disables them.
	StatusInterval time.Duration `yaml:"status_interval"`
	// Timeout bounds one request, from connecting to reading the answer.
	Timeout time.Duration `yaml:"timeout"`
	// TLS configures the connection to an https URL.
	TLS TLSConfig `yaml:"tls"`
	// Backoff is the retry policy for failed requests.
	Backoff BackoffConfig `yaml:"backoff"`
}

// TLSConfig names PEM files for the collector connection.
type TLSConfig struct {
	// CAFile verifies the collector; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the edge's client certificate (mTLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the collector's certificate.
	ServerName string `yaml:"server_name"`
}

// BackoffConfig is an exponential backoff with jitter.
type BackoffConfig struct {
	// Initial is the first wait after a failure; it doubles per failure.
	Initial time.Duration `yaml:"initial"`
	// Max caps the wait between attempts.
	Max time.Duration `yaml:"max"`
	// MaxRetryAfter caps how long a collector's Retry-After is obeyed, so
	// that a misconfigured proxy cannot silence an edge for days.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
}

// Default returns the section's defaults; URL must still be set.
func Default() Config {
	return Config{
		// 5,000 readings encode to ~40 kB: large enough for ~100k readings/s
		// per connection at 50 ms round trips, small enough to retry cheaply.
		BatchSize: 5000,
		// Two in flight: the next batch is encoded and sent while the
		// collector commits the previous one.
		Concurrency:    2,
		BatchDelay:     100 * time.Millisecond,
		StatusInterval: 30 * time.Second,
		Timeout:        30 * time.Second,
		Backoff: BackoffConfig{
			Initial:       500 * time.Millisecond,
			Max:           time.Minute,
			MaxRetryAfter: 10 * time.Minute,
		},
	}
}

// Validate reports every problem at once, each with its field path under
// `collector.`. It touches no file and no network.
func (c Config) Validate() error {
	var errs []error
	p := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("collector.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.URL == "" {
		p("url", "is required")
	} else if u, err := url.Parse(c.URL); err != nil {
		p("url", "%v", err)
	} else if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		p("url", "must be an http:// or https:// URL with a host, got %q", c.URL)
	} else if u.User != nil {
		p("url", "must not contain credentials; use token_file or %s", TokenEnv)
	}
	if c.BatchSize < 1 || c.BatchSize > 100_000 {
		p("batch_size", "must be between 1 and 100000, got %d", c.BatchSize)
	}
	if c.Concurrency < 1 || c.Concurrency > 16 {
		p("concurrency", "must be between 1 and 16, got %d", c.Concurrency)
	}
	if c.BatchDelay < 0 || c.BatchDelay > time.Minute {
		p("batch_delay", "must be between 0 and 1m, got %s", c.BatchDelay)
	}
	if c.StatusInterval < 0 || (c.StatusInterval > 0 && c.StatusInterval < time.Second) {
		p("status_interval", "must be 0 (off) or at least 1s, got %s", c.StatusInterval)
	}
	if c.Timeout < time.Second {
		p("timeout", "must be at least 1s, got %s", c.Timeout)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		p("tls", "cert_file and key_file must be given together")
	}
	if c.Backoff.Initial <= 0 {
		p("backoff.initial", "must be positive, got %s", c.Backoff.Initial)
	}
	if c.Backoff.Max < c.Backoff.Initial {
		p("backoff.max", "must be at least backoff.initial (%s), got %s", c.Backoff.Initial, c.Backoff.Max)
	}
	if c.Backoff.MaxRetryAfter <= 0 {
		p("backoff.max_retry_after", "must be positive, got %s", c.Backoff.MaxRetryAfter)
	}
	return errors.Join(errs...)
}

// LoadToken returns the bearer token from Config.TokenFile, or from the
// SM_EDGE_TOKEN environment variable (getenv) when no file is set. Errors
// never contain the token.
func LoadToken(c Config, getenv func(string) string) (string, error) {
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return "", fmt.Errorf("read collector token: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("read collector token: file %q is empty", c.TokenFile)
		}
		return t, nil
	}
	t := strings.TrimSpace(getenv(TokenEnv))
	if t == "" {
		return "", fmt.Errorf("no collector token: set collector.token_file or %s", TokenEnv)
	}
	return t, nil
}

// NewHTTPClient builds the client for the collector from c (TLS files and
// timeouts).
func NewHTTPClient(c Config) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("collector.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("collector.tls.ca_file %q: no PEM certificate found", c.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("collector.tls: load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: c.Timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr, Timeout: c.Timeout}, nil
}
