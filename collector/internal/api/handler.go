package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// DecodeFunc decodes a wire batch body into b, refusing to decode more
// than maxDecoded bytes (wire.DecodeBatch).
type DecodeFunc func(body []byte, b *wire.Batch, maxDecoded int) error

// Limits bound what one request may cost.
type Limits struct {
	// IngestBody is the largest accepted (compressed) ingest body; larger
	// bodies get 413.
	IngestBody int64
	// IngestDecoded bounds the decoded size of a batch.
	IngestDecoded int
	// StatusBody is the largest accepted status report.
	StatusBody int64
	// PageDefault and PageMax are the default and largest page sizes.
	PageDefault, PageMax int
	// MaxBuckets bounds the buckets of one aggregated readings query.
	MaxBuckets int
	// MaxLatest bounds the sensors of one /readings/latest query.
	MaxLatest int
}

// DefaultLimits are the limits used for zero fields of Options.Limits.
// 8 MiB compressed is several times the edge's default batch; 64 MiB
// decoded keeps a decompression bomb from costing more than that.
func DefaultLimits() Limits {
	return Limits{
		IngestBody:    8 << 20,
		IngestDecoded: 64 << 20,
		StatusBody:    64 << 10,
		PageDefault:   100,
		PageMax:       1000,
		MaxBuckets:    10000,
		MaxLatest:     200,
	}
}

// Options wires a Handler. Auth, Ingest, Ready, Sensors, Readings, Edges,
// Losses, Creds, Alerts and Decode are required; the rest have defaults.
type Options struct {
	Auth     Authenticator
	Ingest   Ingester
	Ready    Readiness
	Sensors  Sensors
	Readings Readings
	Edges    Edges
	Losses   Losses
	Creds    Credentials
	Alerts   Alerts
	Decode   DecodeFunc

	// Metrics, when set, is served at /metrics to readers (viewer,
	// operator, admin). Leave it nil when metrics have their own listener.
	Metrics http.Handler

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Limits     Limits
	// EdgeRate limits each edge credential; KeyRate each API key.
	EdgeRate, KeyRate RateLimit
	// OverloadRetryAfter is the Retry-After sent with 503 (default 5s).
	OverloadRetryAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler is the collector's HTTP handler. It is safe for concurrent use.
type Handler struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	edgeRate *limiter
	keyRate  *limiter
	metrics  *httpMetrics
	routes   []route
	batches  sync.Pool
	bufs     sync.Pool
}

// New builds the handler and registers its metrics.
func New(opts Options) (*Handler, error) {
	var missing []string
	for name, v := range map[string]any{
		"Auth": opts.Auth, "Ingest": opts.Ingest, "Ready": opts.Ready, "Sensors": opts.Sensors,
		"Readings": opts.Readings, "Edges": opts.Edges, "Losses": opts.Losses, "Creds": opts.Creds,
		"Alerts": opts.Alerts,
	} {
		if v == nil {
			missing = append(missing, name)
		}
	}
	if opts.Decode == nil {
		missing = append(missing, "Decode")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("api: missing options %s", strings.Join(missing, ", "))
	}
	def := DefaultLimits()
	l := &opts.Limits
	setDefault(&l.IngestBody, def.IngestBody)
	setDefault(&l.IngestDecoded, def.IngestDecoded)
	setDefault(&l.StatusBody, def.StatusBody)
	setDefault(&l.PageDefault, def.PageDefault)
	setDefault(&l.PageMax, def.PageMax)
	setDefault(&l.MaxBuckets, def.MaxBuckets)
	setDefault(&l.MaxLatest, def.MaxLatest)
	l.PageDefault = min(l.PageDefault, l.PageMax)
	setDefault(&opts.OverloadRetryAfter, 5*time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newHTTPMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		opts:     opts,
		log:      opts.Logger.With("component", "api"),
		mux:      http.NewServeMux(),
		edgeRate: newLimiter(opts.EdgeRate, opts.Now),
		keyRate:  newLimiter(opts.KeyRate, opts.Now),
		metrics:  m,
		batches:  sync.Pool{New: func() any { return new(wire.Batch) }},
		bufs:     sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
	h.routes = h.routeTable()
	h.register()
	return h, nil
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// ServeHTTP serves one request, logging and counting it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.opts.Now()
	info := &reqInfo{route: "unmatched"}
	rw := &statusWriter{ResponseWriter: w}
	r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("handler panic", "route", info.route, "panic", fmt.Sprint(v))
			if !rw.wrote {
				writeProblem(rw, r, Problem{Type: ProblemInternal, Status: 500}, 0)
			}
		}
		d := h.opts.Now().Sub(start)
		code := rw.status
		if code == 0 {
			code = 200
		}
		h.metrics.observe(info.route, code, d)
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
			slog.String("method", r.Method),
			slog.String("route", info.route),
			slog.Int("status", code),
			slog.Duration("duration", d),
			slog.String("principal", info.principal),
			slog.Int64("bytes", rw.bytes),
		)
	}()
	h.mux.ServeHTTP(rw, r)
}

// reqInfo is filled in while a request is served, for the access log.
type reqInfo struct {
	route     string
	principal string
}

type reqInfoKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	if i, ok := ctx.Value(reqInfoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = 200, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// authenticate checks the bearer credential and the route's roles, then the
// credential's rate limit. It writes the error response and returns false
// when the request must stop.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, rt *route) (Principal, bool) {
	secret, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sm-collector"`)
		writeProblem(w, r, Problem{Type: ProblemUnauthorized, Status: 401,
			Detail: "this endpoint needs an Authorization: Bearer credential"}, 0)
		return Principal{}, false
	}
	p, err := h.opts.Auth.Authenticate(r.Context(), secret)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="sm-collector", error="invalid_token"`)
		writeProblem(w, r, Problem{Type: ProblemUnauthorized, Status: 401,
			Detail: "the credential is unknown or revoked"}, 0)
		return Principal{}, false
	case err != nil:
		// The secret is never part of err: implementations look it up by hash.
		h.log.Warn("authenticate", "route", rt.pattern, "err", err)
		writeProblem(w, r, Problem{Type: ProblemUnavailable, Status: 503,
			Detail: "cannot check credentials now"}, h.opts.OverloadRetryAfter)
		return Principal{}, false
	}
	infoFrom(r.Context()).principal = p.Kind + ":" + p.Name
	if !rt.allows(p.Role) {
		writeProblem(w, r, Problem{Type: ProblemForbidden, Status: 403,
			Detail: fmt.Sprintf("role %q may not call %s", p.Role, rt.pattern)}, 0)
		return Principal{}, false
	}
	lim := h.keyRate
	if p.Kind == "edge" {
		lim = h.edgeRate
	}
	if ok, wait := lim.allow(p.key()); !ok {
		writeProblem(w, r, Problem{Type: ProblemRateLimited, Status: 429,
			Detail: "rate limit of this credential exceeded"}, wait)
		return Principal{}, false
	}
	return p, true
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > 512 {
		return "", false
	}
	return tok, true
}
