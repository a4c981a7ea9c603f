package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/edge/internal/admin"
	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/edge/internal/config"
	"github.com/smartmaint/smartmaint/edge/internal/detect"
	"github.com/smartmaint/smartmaint/edge/internal/forward"
	"github.com/smartmaint/smartmaint/edge/internal/mapping"
	"github.com/smartmaint/smartmaint/edge/internal/modelcache"
	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// guardTick is how often a newly activated model's flag share is checked:
// often enough that a bad model is rolled back within seconds of reaching
// its guard's minimum reading count.
const guardTick = 5 * time.Second

// Pipeline is everything behind the mapper: the scoring stage, the durable
// queue, the forwarder to the collector and, when configured, the model
// cache. It is the agent's Sink.
//
// Order of shutdown (Close after Run returned): the forwarder stops first
// (an unacknowledged batch stays queued), then the queue is closed, so
// nothing that was committed is lost.
type Pipeline struct {
	cfg    *config.Config
	log    *slog.Logger
	queue  *buffer.Queue
	stage  *detect.Stage
	fwd    *forward.Forwarder
	cache  *modelcache.Cache
	mapper *mapping.Mapper
	broker func() string

	mu     sync.Mutex
	guards map[string]*guarded // by target key, newly activated models
	models []wire.ModelRef
}

type guarded struct {
	active  modelcache.Active
	guard   *modelcache.Guard
	scored  uint64
	flagged uint64
}

// OpenPipeline opens the queue in cfg.DataDir and builds the stages. The
// broker function reports the broker state for status reports; it may be
// set later with SetBroker.
func OpenPipeline(ctx context.Context, cfg *config.Config, mapper *mapping.Mapper, version string, logger *slog.Logger, reg prometheus.Registerer) (*Pipeline, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir %q: %w", cfg.DataDir, err)
	}
	token, err := forward.LoadToken(cfg.Collector, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("collector token: %w", err)
	}
	q, err := buffer.Open(ctx, filepath.Join(cfg.DataDir, buffer.FileName), cfg.Buffer, buffer.Options{Logger: logger, Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	p := &Pipeline{cfg: cfg, log: logger.With("component", "pipeline"), queue: q, mapper: mapper, guards: map[string]*guarded{}, broker: func() string { return "unknown" }}
	fail := func(err error) (*Pipeline, error) {
		_ = q.Close()
		return nil, err
	}
	set, err := cfg.Scoring.ModelSet()
	if err != nil {
		return fail(fmt.Errorf("scoring: %w", err))
	}
	metrics, err := detect.NewMetrics(reg)
	if err != nil {
		return fail(fmt.Errorf("scoring metrics: %w", err))
	}
	p.stage, err = detect.New(q, mapperProfiles{mapper}, set, cfg.Scoring.EventConfig(), metrics)
	if err != nil {
		return fail(fmt.Errorf("scoring: %w", err))
	}
	p.fwd, err = forward.New(cfg.Collector, q, forward.Options{
		EdgeID: cfg.EdgeID, Token: token, Version: version,
		Status: p.fillStatus, Logger: logger, Registerer: reg,
	})
	if err != nil {
		return fail(fmt.Errorf("forwarder: %w", err))
	}
	if cfg.Models.Enabled() {
		p.cache, err = modelcache.FromConfig(cfg.Models, cfg.EdgeID, os.Getenv, reg, logger, p.modelsChanged)
		if err != nil {
			return fail(fmt.Errorf("model cache: %w", err))
		}
	}
	return p, nil
}

// SetBroker sets the function that reports the broker connection state.
func (p *Pipeline) SetBroker(f func() string) { p.broker = f }

// Write scores readings and commits them to the queue (agent.Sink).
func (p *Pipeline) Write(ctx context.Context, rs []wire.Reading) error {
	return p.stage.Write(ctx, rs)
}

// WriteEvents commits events to the queue (agent.Sink).
func (p *Pipeline) WriteEvents(ctx context.Context, es []wire.Event) error {
	return p.stage.WriteEvents(ctx, es)
}

// Ready reports whether the queue takes writes (for /readyz).
func (p *Pipeline) Ready(context.Context) error {
	st := p.queue.Stats()
	if st.MaxBytes > 0 && st.Bytes >= st.MaxBytes {
		return fmt.Errorf("buffer full (%d of %d bytes): shedding", st.Bytes, st.MaxBytes)
	}
	return nil
}

// Run forwards the queue and keeps the models fresh until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var fwdErr, cacheErr error
	wg.Go(func() { fwdErr = p.fwd.Run(ctx) })
	if p.cache != nil {
		wg.Go(func() { cacheErr = p.cache.Run(ctx) })
		wg.Go(func() { p.watchGuards(ctx) })
	}
	wg.Wait()
	if errors.Is(fwdErr, context.Canceled) {
		fwdErr = nil
	}
	if errors.Is(cacheErr, context.Canceled) {
		cacheErr = nil
	}
	return errors.Join(fwdErr, cacheErr)
}

// Close closes the queue; call it after Run returned.
func (p *Pipeline) Close() error { return p.queue.Close() }

// Extend adds the pipeline's state to the admin /status document.
func (p *Pipeline) Extend(st *admin.Status) {
	qs := p.queue.Stats()
	us := p.fwd.State()
	st.Queue = &qs
	st.Uplink = &us
	p.mu.Lock()
	st.Models = append([]wire.ModelRef(nil), p.models...)
	p.mu.Unlock()
}

// fillStatus completes the status report the forwarder posts.
func (p *Pipeline) fillStatus(s *wire.Status) {
	s.Broker = p.broker()
	p.mu.Lock()
	s.Models = append(s.Models[:0], p.models...)
	p.mu.Unlock()
}

// modelsChanged swaps a new set of downloaded models into the scoring
// stage and starts a guard for each newly activated one.
func (p *Pipeline) modelsChanged(set *modelcache.ActiveSet) {
	// Models that list their sensors (or score an asset's row) go into the
	// set as they are; univariate models without a sensor list apply to
	// whatever their manifest target selects (a sensor glob, a sensor type
	// or the whole edge), resolved per sensor through ModelSet.Match.
	var loaded []*models.Built
	seen := map[string]bool{} // one model promoted to several targets is loaded once
	targeted := false
	refs := make([]wire.ModelRef, 0, len(set.Entries))
	for _, a := range set.Entries {
		b := a.Model.Built
		switch {
		case b.NewRow == nil && len(b.Sensors) == 0:
			targeted = true
		case !seen[b.Ref]:
			seen[b.Ref] = true
			loaded = append(loaded, b)
		}
		n := 0
		if a.Model.Payload != nil {
			n = len(a.Model.Payload.Sensors)
		}
		refs = append(refs, wire.ModelRef{Name: a.Ref.Name, Version: a.Ref.Version, Sensors: n})
	}
	ms, err := detect.BuildSet(loaded)
	if err != nil {
		p.log.Error("new models refused; keeping the previous set", "err", err)
		return
	}
	if targeted {
		ms.Match = func(sensor string) *models.Built { return p.matchTarget(set, sensor) }
	}
	if err := p.stage.SetModels(ms); err != nil {
		p.log.Error("new models refused; keeping the previous set", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.models = refs
	keep := map[string]*guarded{}
	for _, a := range set.Entries {
		key := a.Target.Key() + "=" + a.Ref.ID()
		if g, ok := p.guards[key]; ok {
			keep[key] = g
			continue
		}
		if time.Since(a.Since) < p.cfg.Models.Guard.Window {
			scored, flagged := ms.Stats()
			keep[key] = &guarded{active: a, guard: modelcache.NewGuard(p.cfg.Models.Guard), scored: scored, flagged: flagged}
		}
	}
	p.guards = keep
	p.log.Info("models active", "count", len(refs))
}

// matchTarget returns the univariate model whose manifest target selects
// sensor (the most specific target wins, see modelcache.ActiveSet.Resolve),
// or nil. A model whose artifact names a sensor type only applies to
// sensors whose profile has that type.
func (p *Pipeline) matchTarget(set *modelcache.ActiveSet, sensor string) *models.Built {
	typ := ""
	if pr, ok := p.mapper.Profile(sensor); ok && pr != nil {
		typ = pr.Type
	}
	a, ok := set.Resolve(sensor, typ)
	if !ok {
		return nil
	}
	b := a.Model.Built
	if b == nil || b.NewSensor == nil || b.NewRow != nil || len(b.Sensors) > 0 {
		return nil
	}
	if b.SensorType != "" && b.SensorType != typ {
		return nil
	}
	return b
}

// watchGuards feeds the scoring counts of the current model set to the
// guards of newly activated models and rolls back those that flag an
// implausible share. The counts are per model set: when several models
// became active together they share the verdict.
func (p *Pipeline) watchGuards(ctx context.Context) {
	t := time.NewTicker(guardTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		scored, flagged := p.stage.Models().Stats()
		var reject []*guarded
		p.mu.Lock()
		for key, g := range p.guards {
			if scored < g.scored || flagged < g.flagged { // a new set: counts restarted
				g.scored, g.flagged = 0, 0
			}
			d := g.guard.Observe(int(scored-g.scored), int(flagged-g.flagged))
			g.scored, g.flagged = scored, flagged
			switch d {
			case modelcache.Keep:
				delete(p.guards, key)
			case modelcache.Rollback:
				delete(p.guards, key)
				reject = append(reject, g)
			}
		}
		p.mu.Unlock()
		for _, g := range reject {
			p.log.Error("new model flags an implausible share of readings; rolling back",
				"model", g.active.Ref.ID(), "reason", g.guard.Reason())
			p.cache.Reject(g.active.Target, g.active.Ref, g.guard.Reason())
		}
	}
}

// mapperProfiles gives the scoring stage the sensors' profiles.
type mapperProfiles struct{ m *mapping.Mapper }

func (mp mapperProfiles) Lookup(sensor string) (detect.Profile, bool) {
	pr, ok := mp.m.Profile(sensor)
	if !ok || pr == nil {
		return detect.Profile{}, false
	}
	return detect.Profile{Asset: assetOf(sensor), Limits: limitsOf(pr.Limits)}, true
}

// limitsOf converts a profile's alarm limits to the detectors' form.
func limitsOf(l mapping.Limits) models.LimitsConfig {
	c := models.LimitsConfig{HH: l.HH, H: l.H, L: l.L, LL: l.LL}
	if l.Deadband != nil {
		c.Deadband = *l.Deadband
	}
	return c
}

// assetOf is the sensor id without its last segment: the asset the sensor
// belongs to by the topic-pattern convention site/line/asset/sensor.
func assetOf(sensor string) string {
	if i := strings.LastIndexByte(sensor, '/'); i > 0 {
		return sensor[:i]
	}
	return sensor
}
