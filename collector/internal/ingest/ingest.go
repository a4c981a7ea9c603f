// Package ingest validates batches from authenticated edges and stores them
// through the store package, in one transaction per batch, with bounded
// admission so that a slow database turns into ErrOverloaded (HTTP 503 with
// Retry-After) instead of growing memory or timing out.
//
// Validation problems are never errors: each invalid item becomes a
// rejection in the response and a row in the dead-letter table, and the
// valid rest of the batch is stored. See README.md for the rules and the
// meaning of the counts.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Sentinel errors of Ingest.
var (
	// ErrOverloaded: the write queue is full or the database is too slow or
	// unavailable; the caller should answer 503 with Retry-After (see
	// RetryAfter) and the edge retries later.
	ErrOverloaded = errors.New("collector overloaded")
	// ErrInvalidBatch: the batch as a whole cannot be accepted (no batch
	// id, or it names another edge than the credential's); answer 400/403.
	ErrInvalidBatch = errors.New("invalid batch")
)

// OverloadError is the ErrOverloaded family; it says why and when to retry.
type OverloadError struct {
	Reason     string
	RetryAfter time.Duration
	Err        error // underlying database error, if any
}

func (e *OverloadError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("collector overloaded (%s): %v", e.Reason, e.Err)
	}
	return fmt.Sprintf("collector overloaded (%s)", e.Reason)
}

// Is makes errors.Is(err, ErrOverloaded) true.
func (e *OverloadError) Is(target error) bool { return target == ErrOverloaded }

// Unwrap returns the underlying error.
func (e *OverloadError) Unwrap() error { return e.Err }

// RetryAfter returns how long the edge should wait before retrying after
// err, or 0 when err is not an overload.
func RetryAfter(err error) time.Duration {
	var oe *OverloadError
	if errors.As(err, &oe) {
		return oe.RetryAfter
	}
	return 0
}

// Auto-registration policies (Config.AutoRegister).
const (
	// AutoRegisterEdge registers an unknown sensor on first sight, owned by
	// the edge that sent it (default).
	AutoRegisterEdge = "edge"
	// AutoRegisterOff rejects readings of unknown sensors.
	AutoRegisterOff = "off"
)

// Defaults of Config.
const (
	// DefaultFutureTolerance: how far ahead of server time a timestamp may
	// be. Five minutes absorbs ordinary NTP-less drift while catching a
	// clock set to the wrong day or year.
	DefaultFutureTolerance = 5 * time.Minute
	// DefaultMaxInFlight batches are written at once, but at most half the
	// store's pool: each holds one connection, and queries, status reports
	// and maintenance need the rest. On two cores more than four writers
	// only add contention.
	DefaultMaxInFlight = 4
	// DefaultMaxQueue batches may wait for a slot; beyond that the edge is
	// told to come back later, bounding memory to (in flight + queue)
	// decoded batches.
	DefaultMaxQueue = 16
	// DefaultQueueTimeout: how long a batch waits for a slot.
	DefaultQueueTimeout = 2 * time.Second
	// DefaultWriteTimeout: a batch transaction slower than this means the
	// database is overloaded; the batch is rolled back and retried later.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultRetryAfter is the hint given with ErrOverloaded.
	DefaultRetryAfter = 5 * time.Second
	// DefaultSensorCacheTTL: how long sensor metadata (range, policy,
	// owner) is cached; an admin's change takes effect within it.
	DefaultSensorCacheTTL = 30 * time.Second
	// maxSensorCache bounds the sensor cache; it is emptied when full.
	maxSensorCache = 200_000
	// maxTempRetries: how often a batch is retried at once after a
	// deadlock or serialisation failure before giving up with overload.
	maxTempRetries = 2
)

// Config tunes the service. Zero values mean the defaults.
type Config struct {
	FutureTolerance time.Duration
	// Retention: readings older than now − Retention are rejected; the
	// store's retention when zero.
	Retention      time.Duration
	AutoRegister   string
	MaxInFlight    int
	MaxQueue       int
	QueueTimeout   time.Duration
	WriteTimeout   time.Duration
	RetryAfter     time.Duration
	SensorCacheTTL time.Duration
	// Events, when set, processes each batch's newly stored events inside
	// the batch's transaction (the alert lifecycle, alert.Processor).
	Events store.EventsHook
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (c *Config) setDefaults(db *store.DB) {
	if c.FutureTolerance <= 0 {
		c.FutureTolerance = DefaultFutureTolerance
	}
	if c.Retention <= 0 {
		c.Retention = db.Retention()
	}
	if c.AutoRegister == "" {
		c.AutoRegister = AutoRegisterEdge
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = max(1, min(DefaultMaxInFlight, db.MaxConns()/2))
	}
	if c.MaxQueue < 0 {
		c.MaxQueue = 0
	} else if c.MaxQueue == 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.QueueTimeout <= 0 {
		c.QueueTimeout = DefaultQueueTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.SensorCacheTTL <= 0 {
		c.SensorCacheTTL = DefaultSensorCacheTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Service ingests batches. It is safe for concurrent use.
type Service struct {
	db    *store.DB
	cfg   Config
	log   *slog.Logger
	m     *metrics
	slots chan struct{}
	queue chan struct{} // capacity MaxQueue: one token per waiting batch

	cacheMu sync.Mutex
	cache   map[string]cachedSensor
}

type cachedSensor struct {
	meta    store.SensorMeta
	expires time.Time
}

// New builds a service over db. Metrics are registered on reg (which may
// be nil in tests). A MaxQueue below zero in cfg means "no waiting".
func New(db *store.DB, cfg Config, logger *slog.Logger, reg prometheus.Registerer) *Service {
	noQueue := cfg.MaxQueue < 0
	cfg.setDefaults(db)
	if noQueue {
		cfg.MaxQueue = 0
	}
	s := &Service{
		db:    db,
		cfg:   cfg,
		log:   logger.With("component", "ingest"),
		m:     newMetrics(reg),
		slots: make(chan struct{}, cfg.MaxInFlight),
		queue: make(chan struct{}, cfg.MaxQueue),
		cache: make(map[string]cachedSensor),
	}
	return s
}

// admit takes a write slot, waiting at most QueueTimeout and only when
// fewer than MaxQueue batches already wait. release must be called.
func (s *Service) admit(ctx context.Context) (release func(), err error) {
	release = func() { <-s.slots }
	select {
	case s.slots <- struct{}{}:
		return release, nil
	default:
	}
	select {
	case s.queue <- struct{}{}:
	default:
		return nil, &OverloadError{Reason: "write queue full", RetryAfter: s.cfg.RetryAfter}
	}
	s.m.queueDepth.Inc()
	defer func() { <-s.queue; s.m.queueDepth.Dec() }()
	t := time.NewTimer(s.cfg.QueueTimeout)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, &OverloadError{Reason: "waited too long for a write slot", RetryAfter: s.cfg.RetryAfter}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Ingest validates and stores one decoded batch from the authenticated
// edge edgeID, in one transaction, and returns the response to send; it
// returns only after the transaction committed. Errors: ErrOverloaded (→
// 503 + Retry-After), ErrInvalidBatch (→ 400), others (→ 500). Invalid
// items are rejections, not errors. Ingest may modify b (flags).
func (s *Service) Ingest(ctx context.Context, edgeID string, b *wire.Batch) (*wire.IngestResponse, error) {
	start := time.Now()
	resp, result, err := s.ingest(ctx, edgeID, b)
	s.m.batchSeconds.Observe(time.Since(start).Seconds())
	s.m.batches.WithLabelValues(result).Inc()
	return resp, err
}

func (s *Service) ingest(ctx context.Context, edgeID string, b *wire.Batch) (*wire.IngestResponse, string, error) {
	if b.EdgeID != "" && b.EdgeID != edgeID {
		return nil, "invalid", fmt.Errorf("%w: batch names edge %q but the credential is edge %q", ErrInvalidBatch, b.EdgeID, edgeID)
	}
	if b.BatchID == "" || len(b.BatchID) > 128 || !validText(b.BatchID, 128) {
		return nil, "invalid", fmt.Errorf("%w: batch id must be 1-128 bytes of valid text", ErrInvalidBatch)
	}
	release, err := s.admit(ctx)
	if err != nil {
		if errors.Is(err, ErrOverloaded) {
			return nil, "overloaded", err
		}
		return nil, "failed", err
	}
	defer release()

	// Sensor lookups and registration share the write deadline: a slow
	// database is an overload wherever it shows.
	vctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	w, err := s.validate(vctx, edgeID, b)
	cancel()
	if err != nil {
		return nil, s.classify(err), s.wrapDB(err)
	}
	res, err := s.write(ctx, w)
	result := "stored"
	if err != nil && !store.Temporary(err) && !errors.Is(err, context.Canceled) {
		// A permanent database error would fail this batch forever and
		// block the edge's queue: dead-letter every item instead.
		s.log.Error("batch failed permanently; storing all items as dead letters", "edge", edgeID, "batch", b.BatchID, "err", err)
		res, err = s.write(ctx, poisonWrite(edgeID, b))
		result = "poisoned"
	}
	if err != nil {
		return nil, s.classify(err), s.wrapDB(err)
	}
	resp := &wire.IngestResponse{
		BatchID:    b.BatchID,
		Accepted:   res.Accepted,
		Duplicate:  res.Duplicate,
		Rejected:   res.Rejected,
		Rejections: res.Rejections,
		ServerTime: s.cfg.Now().UTC(),
	}
	if res.Replayed {
		return resp, "replayed", nil
	}
	s.m.readings.WithLabelValues("accepted").Add(float64(res.ReadingsAccepted))
	s.m.readings.WithLabelValues("duplicate").Add(float64(res.ReadingsDuplicate))
	s.m.readings.WithLabelValues("rejected").Add(float64(len(b.Readings) - res.ReadingsAccepted - res.ReadingsDuplicate))
	if res.CopyFallback {
		s.m.copyFallbacks.Inc()
	}
	return resp, result, nil
}

// write runs WriteBatch under the write deadline, retrying deadlocks and
// serialisation failures at once a few times.
func (s *Service) write(ctx context.Context, w *store.BatchWrite) (store.BatchResult, error) {
	var lastErr error
	for attempt := 0; attempt <= maxTempRetries; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		start := time.Now()
		res, err := s.db.WriteBatch(wctx, w)
		s.m.dbSeconds.Observe(time.Since(start).Seconds())
		cancel()
		if err == nil {
			return res, nil
		}
		lastErr = err
		if ctx.Err() != nil || !retryAtOnce(err) {
			break
		}
		s.log.Warn("batch write lost a race; retrying", "batch", w.BatchID, "attempt", attempt+1, "err", err)
	}
	return store.BatchResult{}, lastErr
}

func retryAtOnce(err error) bool {
	return store.IsConflictRetry(err)
}

func (s *Service) classify(err error) string {
	if store.Temporary(err) {
		return "overloaded"
	}
	return "failed"
}

// wrapDB turns temporary database errors into overloads (503 +
// Retry-After): the edge keeps the batch and retries later.
func (s *Service) wrapDB(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if store.Temporary(err) {
		return &OverloadError{Reason: "database slow or unavailable", RetryAfter: s.cfg.RetryAfter, Err: err}
	}
	return err
}
