// Package server is the sm-collector composition root: it opens the
// store, optionally migrates it, builds ingest and the HTTP API on top,
// serves them (HTTPS and mTLS when configured, /metrics on its own address
// or behind credentials) and shuts everything down in order.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smartmaint/smartmaint/collector/internal/api"
	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/collector/internal/ingest"
	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Server is a running collector's parts. Build it with New, serve with
// Serve or Run, release with Close.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	db       *store.DB
	reg      *prometheus.Registry
	handler  *api.Handler
	metrics  http.Handler
	tls      *tls.Config
	alerts   *alerting
	closeOne sync.Once
}

// OpenStore opens the database named by cfg (no migration).
func OpenStore(ctx context.Context, cfg config.Config, logger *slog.Logger) (*store.DB, error) {
	db, err := store.Open(ctx, cfg.Database.URL, store.Options{
		Timescale: cfg.Database.Timescale,
		Retention: cfg.Database.Retention,
		MaxConns:  int32(cfg.Database.MaxConns),
		Logger:    logger,
	})
	if err != nil {
		// The store's errors never contain the password; name the database by
		// its redacted URL.
		return nil, fmt.Errorf("cannot open database %s: %w", cfg.RedactedDatabaseURL(), err)
	}
	return db, nil
}

// New opens the store, migrates it when cfg says so, and builds ingest and
// the API. It does not listen yet.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: logger.With("component", "server"), reg: prometheus.NewRegistry()}
	if cfg.TLS.CertFile != "" {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			return nil, err
		}
		s.tls = tc
	}
	db, err := OpenStore(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	s.db = db
	if cfg.Database.MigrateOnStart {
		if err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("cannot migrate database: %w", err)
		}
		s.log.Info("database migrated", "timescale", db.Timescale())
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Alerts and notifications (alerts.go); secrets come from the process
	// environment or files.
	if s.alerts, err = newAlerting(db.Pool(), cfg, os.Getenv, logger, s.reg); err != nil {
		db.Close()
		return nil, err
	}
	svc := ingest.New(db, ingest.Config{
		FutureTolerance: cfg.Ingest.FutureTolerance,
		Retention:       cfg.Database.Retention,
		AutoRegister:    autoRegister(cfg.Ingest.AutoRegister),
		MaxInFlight:     cfg.Ingest.MaxInFlight,
		MaxQueue:        queueSize(cfg.Ingest.MaxQueue),
		QueueTimeout:    cfg.Ingest.QueueTimeout,
		WriteTimeout:    cfg.Ingest.WriteTimeout,
		RetryAfter:      cfg.Ingest.RetryAfter,
		SensorCacheTTL:  cfg.Ingest.SensorCacheTTL,
		Events:          s.alerts.proc.ProcessEvents,
	}, logger, s.reg)
	s.metrics = promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})
	sa := storeAPI{db: db}
	opts := api.Options{
		Auth: sa, Ingest: ingestAPI{svc: svc}, Ready: sa, Sensors: sa, Readings: sa, Edges: sa, Losses: sa, Creds: sa,
		Alerts:     alertsAPI{p: s.alerts.proc},
		Decode:     wire.DecodeBatch,
		Logger:     logger,
		Registerer: s.reg,
		Limits: api.Limits{
			IngestBody: cfg.Limits.IngestBodyBytes, IngestDecoded: cfg.Limits.IngestDecodedBytes,
			StatusBody: cfg.Limits.StatusBodyBytes, PageDefault: cfg.Limits.PageDefault, PageMax: cfg.Limits.PageMax,
			MaxBuckets: cfg.Limits.MaxBuckets, MaxLatest: cfg.Limits.MaxLatestSensors,
		},
		EdgeRate:           api.RateLimit{Rate: cfg.RateLimits.Edge.PerSecond, Burst: cfg.RateLimits.Edge.Burst},
		KeyRate:            api.RateLimit{Rate: cfg.RateLimits.APIKey.PerSecond, Burst: cfg.RateLimits.APIKey.Burst},
		OverloadRetryAfter: cfg.Ingest.RetryAfter,
	}
	if cfg.Metrics.Listen == "" {
		opts.Metrics = s.metrics
	}
	h, err := api.New(opts)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.handler = h
	return s, nil
}

func autoRegister(v string) string {
	if v == "off" {
		return ingest.AutoRegisterOff
	}
	return ingest.AutoRegisterEdge
}

// queueSize maps the config's 0 ("no waiting") to ingest's -1.
func queueSize(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// Handler is the API handler, for tests that serve it with httptest.
func (s *Server) Handler() http.Handler { return s.handler }

// Metrics is the /metrics handler.
func (s *Server) Metrics() http.Handler { return s.metrics }

// DB is the store, for tests.
func (s *Server) DB() *store.DB { return s.db }

// Close releases the database pool. Safe to call more than once.
func (s *Server) Close() { s.closeOne.Do(func() { s.alerts.close(); s.db.Close() }) }

// tlsConfig loads the certificate and, for mTLS, the client CAs.
func tlsConfig(c config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load TLS certificate %q and key %q: %w", c.CertFile, c.KeyFile, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	switch c.ClientAuth {
	case "optional":
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case "require":
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return tc, nil
	}
	pem, err := os.ReadFile(c.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA file %q holds no PEM certificate", c.ClientCAFile)
	}
	tc.ClientCAs = pool
	return tc, nil
}

// Run listens on the configured addresses and serves until ctx is done;
// see Serve.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.Listen, err)
	}
	var mln net.Listener
	if s.cfg.Metrics.Listen != "" {
		if mln, err = net.Listen("tcp", s.cfg.Metrics.Listen); err != nil {
			ln.Close()
			return fmt.Errorf("cannot listen on %s for metrics: %w", s.cfg.Metrics.Listen, err)
		}
	}
	return s.Serve(ctx, ln, mln)
}

// Timeouts of the HTTP server. Reading a full 8 MiB batch over a slow
// uplink can take a while; headers cannot.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 2 * time.Minute
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
)

// Serve serves the API on ln (HTTPS when TLS is configured) and, when mln
// is not nil, /metrics on mln without credentials. It keeps partitions
// maintained on plain PostgreSQL. When ctx is done it stops accepting,
// drains in-flight requests for at most the shutdown timeout and returns.
// It does not close the store: call Close.
func (s *Server) Serve(ctx context.Context, ln, mln net.Listener) error {
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	srv := &http.Server{
		Handler: s.handler, TLSConfig: s.tls, ErrorLog: errLog,
		ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout, IdleTimeout: idleTimeout,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	servers := []*http.Server{srv}
	errc := make(chan error, 3)
	go func() {
		var err error
		if s.tls != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- fmt.Errorf("api server: %w", err)
	}()
	s.log.Info("serving", "addr", ln.Addr().String(), "https", s.tls != nil, "client_auth", s.cfg.TLS.ClientAuth,
		"metrics_addr", addrOf(mln), "timescale", s.db.Timescale())
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metrics)
		msrv := &http.Server{Handler: mux, ErrorLog: errLog, ReadHeaderTimeout: readHeaderTimeout}
		servers = append(servers, msrv)
		go func() { errc <- fmt.Errorf("metrics server: %w", msrv.Serve(mln)) }()
	}
	maintCtx, stopMaint := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Create partitions ahead and drop expired ones, at start and then
	// every PartitionCheck (a no-op on TimescaleDB, whose policies do it).
	wg.Go(func() { _ = s.db.RunMaintenance(maintCtx, s.cfg.Database.PartitionCheck) })
	wg.Go(func() { s.alerts.run(maintCtx) })

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stopMaint()
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	for _, hs := range servers {
		if err := hs.Shutdown(sctx); err != nil {
			// Drain time is up: cut the remaining connections so nothing
			// still runs when the caller closes the store.
			_ = hs.Close()
			runErr = errors.Join(runErr, fmt.Errorf("shutdown: %w", err))
		}
	}
	wg.Wait()
	if errors.Is(runErr, http.ErrServerClosed) {
		runErr = nil
	}
	s.log.Info("stopped")
	return runErr
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}
