// Package agent is the composition root of `sm-edge run`: it builds the
// mapper, the broker subscription and the admin endpoint, connects them to
// the next pipeline stage (the Sink) and runs them until the context ends,
// then shuts down in order: stop taking messages, drain and acknowledge
// what was received, stop the admin endpoint.
//
// The Sink is given by the caller. In production it is the scoring stage
// in front of the durable bbolt buffer (edge/internal/buffer), whose
// forwarder runs next to the agent; see cli.openSink.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/edge/internal/admin"
	"github.com/smartmaint/smartmaint/edge/internal/config"
	"github.com/smartmaint/smartmaint/edge/internal/mapping"
	"github.com/smartmaint/smartmaint/edge/internal/mqttsub"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Sink is the next pipeline stage (docs: /work/notes/edge-contract.md):
// Write returns only once the readings are durably accepted, or with an
// error. It is called concurrently from several workers; it must not retain
// rs after returning and it assigns Seq.
type Sink interface {
	Write(ctx context.Context, rs []wire.Reading) error
	WriteEvents(ctx context.Context, es []wire.Event) error
}

// Options configure an Agent.
type Options struct {
	Config   *config.Config
	Profiles mapping.Profiles
	// Mapper is an already built mapper (see NewMapper), so the scoring
	// stage can be built with its Profile lookup before the agent; nil
	// builds one here.
	Mapper *mapping.Mapper
	// Sink receives the mapped readings. Required.
	Sink Sink
	// Ready, if set, is part of /readyz (e.g. "the buffer is writable").
	Ready func(ctx context.Context) error
	// Extend, if set, adds the later stages' state to /status.
	Extend   func(*admin.Status)
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Version  string
}

// NewMapper builds the mapper of cfg and registers its metrics on reg.
func NewMapper(cfg *config.Config, profiles mapping.Profiles, reg prometheus.Registerer, logger *slog.Logger) (*mapping.Mapper, error) {
	return mapping.New(mapping.Options{
		Subscriptions: cfg.Subscriptions,
		Sensors:       cfg.Sensors,
		Profiles:      profiles,
		Registerer:    reg,
		Logger:        logger.With("component", "mapping"),
	})
}

// Agent runs the ingest side of sm-edge.
type Agent struct {
	opts    Options
	log     *slog.Logger
	mapper  *mapping.Mapper
	sub     *mqttsub.Subscriber
	admin   *admin.Server
	started time.Time
	pool    sync.Pool

	writes     atomic.Uint64
	failures   atomic.Uint64
	errMu      sync.Mutex
	lastErr    string
	rateMu     sync.Mutex
	rateSample []rateSample

	mWriteFailures prometheus.Counter
	mWriteSeconds  prometheus.Histogram
}

type rateSample struct {
	at       time.Time
	readings uint64
}

// New builds the agent. It opens the admin listener (so a port conflict is
// reported at start) but does not connect to the broker yet.
func New(opts Options) (*Agent, error) {
	if opts.Config == nil || opts.Sink == nil || opts.Logger == nil || opts.Registry == nil {
		return nil, errors.New("agent: Config, Sink, Logger and Registry are required")
	}
	a := &Agent{opts: opts, log: opts.Logger.With("component", "agent"), started: time.Now()}
	a.pool.New = func() any { s := make([]wire.Reading, 0, 1024); return &s }
	a.mWriteFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "smartmaint_edge_sink_write_failures_total",
		Help: "Failed hand-overs of readings to the next stage (retried; messages stay unacknowledged meanwhile).",
	})
	a.mWriteSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "smartmaint_edge_sink_write_seconds",
		Help:    "Time to hand a batch of readings to the next stage (durable write).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	opts.Registry.MustRegister(a.mWriteFailures, a.mWriteSeconds)
	a.mapper = opts.Mapper
	if a.mapper == nil {
		m, err := NewMapper(opts.Config, opts.Profiles, opts.Registry, opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.mapper = m
	}
	var filters []mqttsub.Filter
	for _, f := range a.mapper.Filters() {
		filters = append(filters, mqttsub.Filter{Topic: f.Topic, QoS: f.QoS})
	}
	sub, err := mqttsub.New(mqttsub.Options{
		Config:     opts.Config.Broker,
		ClientID:   opts.Config.ClientID(),
		Filters:    filters,
		Handler:    a,
		Logger:     opts.Logger,
		Registerer: opts.Registry,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.sub = sub
	if opts.Config.Admin.Enabled() {
		token, err := admin.LoadToken(opts.Config.Admin, opts.Config.DataDir)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		srv, err := admin.Listen(admin.Options{
			Listen:   opts.Config.Admin.Listen,
			Token:    token,
			Gatherer: opts.Registry,
			Status:   a.StatusSensors,
			Ready:    a.ready,
			Logger:   opts.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.admin = srv
	}
	return a, nil
}

// BrokerState is the broker connection state: "connected", "connecting"
// or "disconnected", as reported to the collector.
func (a *Agent) BrokerState() string { return a.sub.Status().State }

// Mapper returns the agent's mapper (for Profile lookups).
func (a *Agent) Mapper() *mapping.Mapper { return a.mapper }

// AdminAddr returns the admin endpoint's address, or "" when disabled.
func (a *Agent) AdminAddr() string {
	if a.admin == nil {
		return ""
	}
	return a.admin.Addr()
}

// Run runs until ctx is cancelled and everything received is drained.
func (a *Agent) Run(ctx context.Context) error {
	if a.admin != nil {
		// The path, never the token: technicians and Prometheus need it
		// for /metrics and /status.
		a.log.Info("starting", "edge_id", a.opts.Config.EdgeID, "admin", a.AdminAddr(),
			"admin_token_file", a.opts.Config.Admin.TokenPath(a.opts.Config.DataDir))
	} else {
		a.log.Info("starting", "edge_id", a.opts.Config.EdgeID)
	}
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()
	var wg sync.WaitGroup
	var adminErr error
	if a.admin != nil {
		wg.Go(func() { adminErr = a.admin.Serve(adminCtx) })
	}
	wg.Go(func() { a.sampleRate(adminCtx) })
	err := a.sub.Run(ctx)
	stopAdmin()
	wg.Wait()
	a.log.Info("stopped")
	return errors.Join(err, adminErr)
}

// HandleBatch maps the messages, writes their readings to the sink and
// acknowledges them (mqttsub.Handler). Messages that yield no reading
// (poison, unknown topics, ignored Sparkplug types) are acknowledged at
// once; the others after the sink accepted their readings. If the sink
// keeps failing, the write is retried with backoff until ctx ends; those
// messages stay unacknowledged and the broker redelivers them later.
func (a *Agent) HandleBatch(ctx context.Context, msgs []mqttsub.Message) {
	bufp := a.pool.Get().(*[]wire.Reading)
	rs := (*bufp)[:0]
	pending := 0
	for i := range msgs {
		m := &msgs[i]
		n := len(rs)
		rs = a.mapper.Map(rs, m.Topic, m.Payload, m.Received)
		if len(rs) == n {
			m.Ack()
			continue
		}
		msgs[pending] = *m
		pending++
	}
	if pending > 0 && a.write(ctx, rs) {
		for i := range msgs[:pending] {
			msgs[i].Ack()
		}
	}
	clear(rs)
	*bufp = rs[:0]
	a.pool.Put(bufp)
}

// write hands rs to the sink, retrying with capped backoff; false when ctx
// ended first.
func (a *Agent) write(ctx context.Context, rs []wire.Reading) bool {
	delay := 50 * time.Millisecond
	for {
		start := time.Now()
		err := a.opts.Sink.Write(ctx, rs)
		a.mWriteSeconds.Observe(time.Since(start).Seconds())
		if err == nil {
			a.writes.Add(1)
			return true
		}
		a.failures.Add(1)
		a.mWriteFailures.Inc()
		a.errMu.Lock()
		a.lastErr = err.Error()
		a.errMu.Unlock()
		if ctx.Err() != nil {
			a.log.Warn("shutdown: readings not written; their messages stay unacknowledged for redelivery", "readings", len(rs), "err", err)
			return false
		}
		a.log.Warn("cannot write readings to the next stage; retrying", "readings", len(rs), "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (a *Agent) ready(ctx context.Context) error {
	if !a.sub.Connected() {
		return errors.New("broker not connected")
	}
	if a.opts.Ready != nil {
		return a.opts.Ready(ctx)
	}
	return nil
}

// rateWindow is how far back readings/s is averaged.
const rateWindow = 10 * time.Second

func (a *Agent) sampleRate(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		a.rateMu.Lock()
		now := time.Now()
		a.rateSample = append(a.rateSample, rateSample{at: now, readings: a.mapper.Readings()})
		for len(a.rateSample) > 2 && now.Sub(a.rateSample[0].at) > rateWindow {
			a.rateSample = a.rateSample[1:]
		}
		a.rateMu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) rate() float64 {
	a.rateMu.Lock()
	defer a.rateMu.Unlock()
	if len(a.rateSample) < 2 {
		return 0
	}
	first, last := a.rateSample[0], a.rateSample[len(a.rateSample)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(last.readings-first.readings) / dt
}

// Status returns the document served at /status, with every sensor.
func (a *Agent) Status() admin.Status { return a.StatusSensors(0) }

// StatusSensors returns the document served at /status with at most
// sensors sensors (0: all), silent the longest first.
func (a *Agent) StatusSensors(sensors int) admin.Status {
	st := admin.Status{
		EdgeID:            a.opts.Config.EdgeID,
		Version:           a.opts.Version,
		StartedAt:         a.started.UTC(),
		Now:               time.Now().UTC(),
		Broker:            a.sub.Status(),
		ReadingsPerSecond: a.rate(),
		Mapping:           a.mapper.Snapshot(20, sensors),
		Sink:              admin.SinkStatus{Writes: a.writes.Load(), Failures: a.failures.Load()},
	}
	a.errMu.Lock()
	st.Sink.LastError = a.lastErr
	a.errMu.Unlock()
	if a.opts.Extend != nil {
		a.opts.Extend(&st)
	}
	for _, f := range a.mapper.Filters() {
		format := ""
		for _, s := range a.opts.Config.Subscriptions {
			if s.Topic == f.Pattern {
				format = string(s.FormatOrDefault())
			}
		}
		st.Subscriptions = append(st.Subscriptions, admin.Subscription{Pattern: f.Pattern, Filter: f.Topic, QoS: f.QoS, Format: format})
	}
	return st
}
