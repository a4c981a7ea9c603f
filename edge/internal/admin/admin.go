// Package admin serves the edge agent's local admin endpoint: Prometheus
// metrics (/metrics), liveness (/healthz), readiness (/readyz) and a JSON
// status document (/status) that `sm-edge status` prints. It listens on
// loopback by default. /healthz and /readyz are open (probes); /metrics and
// /status need "Authorization: Bearer TOKEN", the token being read from
// admin.token_file or, when that is not set, from DATA_DIR/admin.token,
// which the agent generates on first start (see token.go).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/edge/internal/forward"
	"github.com/smartmaint/smartmaint/shared/wire"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smartmaint/smartmaint/edge/internal/config/strictyaml"
	"github.com/smartmaint/smartmaint/edge/internal/mapping"
	"github.com/smartmaint/smartmaint/edge/internal/mqttsub"
)

// DefaultListen is the admin endpoint's default address.
const DefaultListen = "127.0.0.1:9470"

// Config is the admin section of the edge config.
type Config struct {
	// Listen is host:port; default 127.0.0.1:9470. "" or "off" disables it.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token /metrics and /status require (one
	// line). Empty: DATA_DIR/admin.token, generated on first start.
	TokenFile string `yaml:"token_file,omitempty"`
}

// Default returns the admin defaults.
func Default() Config { return Config{Listen: DefaultListen} }

// Enabled reports whether the endpoint should run.
func (c Config) Enabled() bool { return c.Listen != "" && c.Listen != "off" }

// Validate checks the section. Errors are "path: message".
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return strictyaml.Errorf("listen", "must be host:port, e.g. 127.0.0.1:9470 (got %q)", c.Listen)
	}
	return nil
}

// DefaultStatusSensors is how many sensors /status lists unless asked for
// more (?sensors=all).
const DefaultStatusSensors = 50

// Subscription describes one configured subscription in Status.
type Subscription struct {
	Pattern string `json:"pattern"`
	Filter  string `json:"filter"`
	QoS     byte   `json:"qos"`
	Format  string `json:"format"`
}

// Status is the JSON document served at /status.
type Status struct {
	EdgeID        string         `json:"edge_id"`
	Version       string         `json:"version"`
	StartedAt     time.Time      `json:"started_at"`
	Now           time.Time      `json:"now"`
	Broker        mqttsub.Status `json:"broker"`
	Subscriptions []Subscription `json:"subscriptions"`
	// ReadingsPerSecond is the mapping rate over the last ~10 seconds.
	ReadingsPerSecond float64 `json:"readings_per_second"`
	// Mapping holds counts, sensors seen (Mapping.SensorsSeen; Sensors
	// lists at most DefaultStatusSensors of them, silent the longest first,
	// unless ?sensors=all), unmapped topics, errors by reason and the most
	// recent dead letters.
	Mapping mapping.Snapshot `json:"mapping"`
	// Sink describes the stage readings are handed to (e.g. the durable
	// buffer), with its last error.
	Sink SinkStatus `json:"sink"`
	// Queue is the durable queue's state (backlog, runway, drops).
	Queue *buffer.Stats `json:"queue,omitempty"`
	// Uplink is the forwarder's view of the collector connection.
	Uplink *forward.State `json:"uplink,omitempty"`
	// Models are the downloaded models in use (none: built-in detectors).
	Models []wire.ModelRef `json:"models,omitempty"`
}

// SinkStatus says how handing readings to the next stage goes.
type SinkStatus struct {
	Writes    uint64 `json:"writes"`
	Failures  uint64 `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

// Options configure a Server.
type Options struct {
	Listen   string
	Gatherer prometheus.Gatherer
	// Token is the bearer token /metrics and /status require; required.
	Token string
	// Status returns the current status document with at most sensors
	// entries in Mapping.Sensors (0: all).
	Status func(sensors int) Status
	// Ready returns nil when the agent is ready (the broker is connected
	// and the next stage accepts writes).
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
}

// Server is the admin HTTP server.
type Server struct {
	opts Options
	ln   net.Listener
	srv  *http.Server
}

// Listen opens the listening socket, so that Addr is known before Serve.
func Listen(opts Options) (*Server, error) {
	if opts.Token == "" {
		return nil, errors.New("admin: a token is required")
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", opts.Listen, err)
	}
	s := &Server{opts: opts, ln: ln}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler returns the HTTP handler (also usable without Listen in tests).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.auth(promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.opts.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			defer cancel()
			if err := s.opts.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /status", s.auth(http.HandlerFunc(s.status)))
	return mux
}

// status serves the status document. By default it lists at most
// DefaultStatusSensors sensors (silent the longest first) and is indented;
// ?sensors=all lists every sensor (by id, not indented: tens of thousands
// of sensors are megabytes), ?sensors=N at most N.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	n := DefaultStatusSensors
	switch q := r.URL.Query().Get("sensors"); q {
	case "":
	case "all":
		n = 0
	default:
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 {
			http.Error(w, `sensors must be "all" or a positive number`, http.StatusBadRequest)
			return
		}
		n = v
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	if n != 0 {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(s.opts.Status(n))
}

// auth lets a request through only with the right bearer token. The
// tokens are compared in constant time; the answer to a wrong one never
// contains a token.
func (s *Server) auth(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(s.opts.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sm-edge admin"`)
			http.Error(w, "missing or wrong bearer token: send \"Authorization: Bearer TOKEN\" with the token from admin.token_file (default DATA_DIR/"+TokenFileName+")", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Serve serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}
