// Package detect is the edge scoring stage. It sits between mapping and
// the buffer, with the edge contract's Write/WriteEvents method set: it
// scores every reading with the model that applies to its sensor (setting
// Score, Model "name@version", FlagAnomaly and FlagLimit), keeps each
// sensor's detector state, turns scores and limit alarms into raise/clear
// events with hysteresis and minimum duration, hands the events to the next
// stage ahead of the readings, and passes the readings on.
//
// Models are swapped with SetModels through an atomic pointer: a batch is
// scored entirely with the set that was current when it arrived, and no
// reading is dropped or left unscored by a swap. Sensors whose model
// changed start from fresh detector state.
//
// Sensors grouped into an asset (ModelSet.Assets) are scored together: the
// stage assembles rows (a row is complete when every sensor of the group
// has a value for the same timestamp, or when a sensor reports again or a
// newer timestamp arrives, carrying the last values forward) and scores
// them with models.Asset, the same code `sm-edge score` and the offline
// evaluation use. The asset score is given to the row's readings that are
// still in the batch being scored; in live operation, where an asset's
// sensors often arrive in separate messages, that is the reading that
// completed the row.
//
// Event timing (minimum duration, hysteresis) runs on the readings'
// source timestamps, not on a wall clock, so replays and live data behave
// the same.
package detect

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Next is the stage readings and events are handed to (the buffer).
type Next interface {
	Write(ctx context.Context, rs []wire.Reading) error
	WriteEvents(ctx context.Context, es []wire.Event) error
}

// Profile is what the stage needs to know about a sensor from its profile.
type Profile struct {
	// Asset groups the sensor's events for alerting.
	Asset string
	// Limits are the sensor's alarm limits (may be empty).
	Limits models.LimitsConfig
}

// Profiles looks sensor profiles up. It is called once per sensor (and
// again after a model swap), and for the asset name of each event, so it
// must be safe for concurrent use.
type Profiles interface {
	Lookup(sensor string) (Profile, bool)
}

// AssetGroup scores a set of sensors together.
type AssetGroup struct {
	Name    string
	Sensors []string
	// Row builds the group's row detector (nil: per-sensor models only,
	// combined). Ref names it.
	Row func() models.RowDetector
	Ref string
	// RowOnly scores the group with the row detector alone (a trained
	// multivariate model), without per-sensor detectors.
	RowOnly bool
}

// ModelSet is the immutable set of models the stage scores with.
type ModelSet struct {
	// Default scores every sensor no other model names.
	Default *models.Built
	// BySensor maps a sensor id to its univariate model.
	BySensor map[string]*models.Built
	// Match, when set, chooses a univariate model for a sensor that
	// BySensor does not name, before Default: the model cache uses it for
	// models promoted to a target (a sensor glob, a sensor type, the whole
	// edge) rather than to listed sensors. It returns nil for "no match".
	// It is called once per sensor when the sensor's state is created, and
	// must be safe for concurrent use.
	Match func(sensor string) *models.Built
	// Assets are groups of sensors scored together.
	Assets []AssetGroup

	groupOf map[string]groupRef

	// scored and anomalous count the readings this set scored, for the
	// model cache's "implausible share of anomalies" rollback check.
	scored, anomalous atomic.Uint64
}

// Stats returns how many readings this set has scored and how many of
// them it flagged as anomalous since it was installed.
func (ms *ModelSet) Stats() (scored, anomalous uint64) {
	return ms.scored.Load(), ms.anomalous.Load()
}

type groupRef struct{ group, col int }

// Builtin returns a ModelSet scoring every sensor with a built-in detector
// (models.New names), recorded as "<name>@builtin".
func Builtin(name string) (*ModelSet, error) {
	d, err := models.New(name)
	if err != nil {
		return nil, err
	}
	return &ModelSet{Default: &models.Built{
		Ref: name + "@builtin", Kind: name, Threshold: d.Threshold(),
		NewSensor: func() models.Detector { x, _ := models.New(name); return x },
	}}, nil
}

func (ms *ModelSet) index() error {
	ms.groupOf = map[string]groupRef{}
	for g, a := range ms.Assets {
		if len(a.Sensors) == 0 {
			return fmt.Errorf("asset group %q: no sensors", a.Name)
		}
		for c, s := range a.Sensors {
			if _, dup := ms.groupOf[s]; dup {
				return fmt.Errorf("asset group %q: sensor %q is already in a group", a.Name, s)
			}
			ms.groupOf[s] = groupRef{g, c}
		}
	}
	return nil
}

func (ms *ModelSet) sensorModel(sensor string) *models.Built {
	if b, ok := ms.BySensor[sensor]; ok {
		return b
	}
	if ms.Match != nil {
		if b := ms.Match(sensor); b != nil {
			return b
		}
	}
	return ms.Default
}

// EventConfig sets event hysteresis and minimum duration.
type EventConfig struct {
	// MinReadings and MinDuration (ns): how many consecutive readings at
	// or above the threshold, spanning at least how long, raise an event.
	MinReadings int
	MinDuration int64
	// Immediate raises at once on a single reading scoring at least this
	// (a strong spike is worth reporting even if it is alone).
	Immediate float64
	// ClearRatio: the condition clears when the score stays below
	// ClearRatio·threshold for ClearReadings readings spanning at least
	// ClearDuration (ns).
	ClearRatio    float64
	ClearReadings int
	ClearDuration int64
}

// DefaultEventConfig: three readings in a row raise, or one at score ≥ 0.8
// (p ≤ 1e-8); five readings below 70 % of the threshold clear. No minimum
// duration, so a fault of a minute at 1 Hz (or of three readings at any
// rate) can raise. There is no event-level warm-up: the built-in
// detectors score 0 until they have a baseline (models.DefaultWarmup), so a
// fresh sensor neither flags nor raises during its first readings.
// Measured on five simulated pumps at 1 Hz (plant_test.go): no event in a
// fresh stage's first minutes, about four an hour for 35 sensors after (23
// in 6 × 35 sensor-hours; a sensor makes 86 400 readings a day). Immediate
// 0.7 would raise an 8σ step within 10 s in 34/60 runs instead of 30/60 at
// the same long-run rate, but it lets a lone heavy-tailed vibration reading
// raise an event a minute after start, before the calibration has learnt
// the sensor's tails; 0.8 is kept.
func DefaultEventConfig() EventConfig {
	return EventConfig{MinReadings: 3, Immediate: 0.8, ClearRatio: 0.7, ClearReadings: 5}
}

// Stage is the scoring stage. It is safe for concurrent use.
type Stage struct {
	next     Next
	profiles Profiles
	evcfg    EventConfig
	metrics  *Metrics
	set      atomic.Pointer[ModelSet]

	mu      sync.Mutex
	sensors map[string]*sensorState
	assets  map[int]*assetState // by group index of the current set
	batch   uint64
	pool    sync.Pool // *batchBuf
}

type batchBuf struct {
	rs []wire.Reading
	es []wire.Event
}

// sensorState is kept for every sensor (tens of thousands on a big site),
// so it holds no more than scoring needs; the asset name, needed only for
// events, is looked up when one is raised or cleared. 88 bytes (the 96-byte
// size class) besides the detector.
type sensorState struct {
	set      *ModelSet
	det      models.Detector
	model    *models.Built
	limits   *models.Limits
	grp      *assetState
	anomaly  tracker
	col      int32
	limLevel models.Level
}

type assetState struct {
	set     *ModelSet
	group   *AssetGroup
	a       *models.Asset
	ref     string
	row     []float64
	seen    []bool
	nseen   int
	t       int64
	pend    []pending
	batch   uint64
	anomaly tracker
	last    int // column of the last reading, for event attribution
}

type pending struct{ idx, col int }

// New returns a stage that scores with set (see SetModels), looks limits
// up in profiles (nil: no limits, no asset names) and hands on to next.
// metrics may be nil.
func New(next Next, profiles Profiles, set *ModelSet, ev EventConfig, metrics *Metrics) (*Stage, error) {
	s := &Stage{next: next, profiles: profiles, evcfg: ev, metrics: metrics, sensors: map[string]*sensorState{}, assets: map[int]*assetState{}}
	s.pool.New = func() any { return &batchBuf{} }
	if err := s.SetModels(set); err != nil {
		return nil, err
	}
	return s, nil
}

// SetModels swaps the model set atomically. Readings already being scored
// finish with the old set; the next batch uses the new one.
func (s *Stage) SetModels(set *ModelSet) error {
	if set == nil || set.Default == nil || set.Default.NewSensor == nil {
		return fmt.Errorf("detect: model set needs a univariate default model")
	}
	if err := set.index(); err != nil {
		return fmt.Errorf("detect: %w", err)
	}
	s.set.Store(set)
	if s.metrics != nil {
		s.metrics.swaps.Inc()
	}
	return nil
}

// Models returns the current model set.
func (s *Stage) Models() *ModelSet { return s.set.Load() }

// Write scores rs and hands the events, then the readings, to the next
// stage. rs is not modified or retained.
func (s *Stage) Write(ctx context.Context, rs []wire.Reading) error {
	set := s.set.Load()
	b := s.pool.Get().(*batchBuf)
	b.rs = append(b.rs[:0], rs...)
	b.es = b.es[:0]
	var start time.Time
	if s.metrics != nil {
		start = time.Now()
	}
	s.mu.Lock()
	s.batch++
	for i := range b.rs {
		s.score(set, b, i)
	}
	s.mu.Unlock()
	var scored, anomalous uint64
	for i := range b.rs {
		if b.rs[i].Model != "" {
			scored++
			if b.rs[i].Flags&wire.FlagAnomaly != 0 {
				anomalous++
			}
		}
	}
	set.scored.Add(scored)
	set.anomalous.Add(anomalous)
	if m := s.metrics; m != nil && len(b.rs) > 0 {
		m.latency.Observe(time.Since(start).Seconds() / float64(len(b.rs)))
		m.scored.Add(float64(scored))
		m.anomalies.Add(float64(anomalous))
		for i := range b.es {
			k, st := eventLabels(uint8(b.es[i].Kind), uint8(b.es[i].State))
			m.events.WithLabelValues(k, st).Inc()
		}
	}
	var err error
	if len(b.es) > 0 {
		err = s.next.WriteEvents(ctx, b.es)
	}
	if err == nil {
		err = s.next.Write(ctx, b.rs)
	}
	clear(b.rs) // drop string references before pooling
	clear(b.es)
	s.pool.Put(b)
	return err
}

// WriteEvents passes events from upstream through unchanged.
func (s *Stage) WriteEvents(ctx context.Context, es []wire.Event) error {
	return s.next.WriteEvents(ctx, es)
}

func (s *Stage) state(set *ModelSet, sensor string) *sensorState {
	st := s.sensors[sensor]
	if st != nil && st.set == set {
		return st
	}
	st = &sensorState{set: set}
	if s.profiles != nil {
		if p, ok := s.profiles.Lookup(sensor); ok {
			if !p.Limits.Empty() && p.Limits.Validate() == nil {
				st.limits = models.NewLimits(p.Limits)
			}
		}
	}
	if g, ok := set.groupOf[sensor]; ok {
		st.grp, st.col = s.assetState(set, g.group), int32(g.col)
	} else {
		st.model = set.sensorModel(sensor)
		st.det = st.model.NewSensor()
	}
	s.sensors[sensor] = st
	return st
}

// assetOf is the asset an event of the sensor belongs to: its profile's
// asset, else the name of its asset group.
func (s *Stage) assetOf(st *sensorState, sensor string) string {
	if s.profiles != nil {
		if p, ok := s.profiles.Lookup(sensor); ok && p.Asset != "" {
			return p.Asset
		}
	}
	if st.grp != nil {
		return st.grp.group.Name
	}
	return ""
}

func (s *Stage) assetState(set *ModelSet, g int) *assetState {
	as := s.assets[g]
	if as != nil && as.set == set {
		return as
	}
	grp := &set.Assets[g]
	var dets []models.Detector
	thr := set.Default.Threshold
	if !grp.RowOnly || grp.Row == nil {
		for _, sn := range grp.Sensors {
			dets = append(dets, set.sensorModel(sn).NewSensor())
		}
	}
	var row models.RowDetector
	ref := set.Default.Ref
	if grp.Row != nil {
		row = grp.Row()
		if grp.Ref != "" {
			ref = grp.Ref
		}
		if grp.RowOnly {
			thr = row.Threshold()
		}
	}
	as = &assetState{
		set: set, group: grp, ref: ref,
		a:    models.NewAsset(dets, row, thr),
		row:  make([]float64, len(grp.Sensors)),
		seen: make([]bool, len(grp.Sensors)),
		pend: make([]pending, 0, len(grp.Sensors)),
	}
	for i := range as.row {
		as.row[i] = math.NaN()
	}
	s.assets[g] = as
	return as
}

func (s *Stage) score(set *ModelSet, b *batchBuf, i int) {
	r := &b.rs[i]
	st := s.state(set, r.Sensor)
	v := r.Value
	usable := r.Quality != wire.QualityBad && !math.IsNaN(v) && !math.IsInf(v, 0)
	if st.limits != nil && usable {
		st.limits.Update(r.Time, v)
		lv := st.limits.Active()
		if lv != models.LevelNone {
			r.Flags |= wire.FlagLimit
		}
		if lv != st.limLevel {
			if st.limLevel != models.LevelNone {
				b.es = append(b.es, s.limitEvent(st, r, st.limLevel, wire.EventCleared))
			}
			if lv != models.LevelNone {
				b.es = append(b.es, s.limitEvent(st, r, lv, wire.EventRaised))
			}
			st.limLevel = lv
		}
	}
	if st.grp != nil {
		s.scoreGrouped(st, b, i, usable)
		return
	}
	if !usable {
		return
	}
	sc := st.det.Update(r.Time, v)
	s.apply(r, sc, st.model.Threshold, st.model.Ref)
	if ev, ok := st.anomaly.update(&s.evcfg, r.Time, sc, st.model.Threshold, v); ok {
		ev.Sensor, ev.Asset, ev.Rule, ev.Model = r.Sensor, s.assetOf(st, r.Sensor), st.model.Kind, st.model.Ref
		b.es = append(b.es, ev)
	}
}

func (s *Stage) apply(r *wire.Reading, sc, thr float64, ref string) {
	r.Score = float32(sc)
	r.Model = ref
	if sc >= thr {
		r.Flags |= wire.FlagAnomaly
	}
}

func (s *Stage) scoreGrouped(st *sensorState, b *batchBuf, i int, usable bool) {
	g := st.grp
	r := &b.rs[i]
	if g.batch != s.batch {
		g.pend = g.pend[:0]
		g.batch = s.batch
	}
	if g.nseen > 0 && (g.seen[st.col] || r.Time != g.t) {
		s.flushRow(g, b)
	}
	if g.nseen == 0 {
		g.t = r.Time
	}
	if usable {
		g.row[st.col] = r.Value
	} else {
		g.row[st.col] = math.NaN()
	}
	g.seen[st.col] = true
	g.nseen++
	g.last = int(st.col)
	g.pend = append(g.pend, pending{i, int(st.col)})
	if g.nseen == len(g.seen) {
		s.flushRow(g, b)
	}
}

func (s *Stage) flushRow(g *assetState, b *batchBuf) {
	sc := g.a.Update(g.t, g.row)
	thr := g.a.Threshold()
	var value float64
	for _, p := range g.pend {
		s.apply(&b.rs[p.idx], sc, thr, g.ref)
	}
	// Attribute the event to the sensor with the highest own score.
	best, bestCol := -1.0, g.last
	if len(g.a.SensorScores()) == 0 {
		best = 0
	}
	for c, x := range g.a.SensorScores() {
		if x > best {
			best, bestCol = x, c
		}
	}
	if g.a.RowScore() > best {
		bestCol = g.last
	}
	value = g.row[bestCol]
	if ev, ok := g.anomaly.update(&s.evcfg, g.t, sc, thr, value); ok {
		ev.Sensor, ev.Asset, ev.Model = g.group.Sensors[bestCol], g.group.Name, g.ref
		ev.Rule = "asset"
		b.es = append(b.es, ev)
	}
	// Missing values carry forward: a sensor that skips a row keeps its
	// last value in the next row rather than becoming NaN.
	for c := range g.seen {
		g.seen[c] = false
	}
	g.nseen = 0
	g.pend = g.pend[:0]
}

func (s *Stage) limitEvent(st *sensorState, r *wire.Reading, lv models.Level, state wire.EventState) wire.Event {
	sev := wire.SeverityMajor
	if lv == models.LevelHH || lv == models.LevelLL {
		sev = wire.SeverityCritical
	}
	score := float32(0.75)
	if sev == wire.SeverityCritical {
		score = 1
	}
	return wire.Event{
		Sensor: r.Sensor, Asset: s.assetOf(st, r.Sensor), Kind: wire.EventLimit, State: state, Severity: sev,
		Rule: lv.String(), Time: r.Time, WindowStart: r.Time, WindowEnd: r.Time,
		Value: r.Value, Score: score, Threshold: st.limits.LimitOf(lv),
	}
}

// tracker turns a score stream into raise/clear events.
type tracker struct {
	runSince    int64
	peak        float64
	windowStart int64
	runN        int32 // saturates; compared with counts of a few readings
	active      bool
}

// count extends the current run.
func (k *tracker) count() {
	if k.runN < math.MaxInt32 {
		k.runN++
	}
}

func (k *tracker) update(cfg *EventConfig, t int64, sc, thr, value float64) (wire.Event, bool) {
	if !k.active {
		if sc < thr {
			k.runN = 0
			return wire.Event{}, false
		}
		if k.runN == 0 {
			k.runSince, k.peak = t, 0
		}
		k.count()
		k.peak = math.Max(k.peak, sc)
		if (cfg.Immediate > 0 && sc >= cfg.Immediate) || (int(k.runN) >= cfg.MinReadings && t-k.runSince >= cfg.MinDuration) {
			k.active, k.windowStart, k.runN = true, k.runSince, 0
			return k.event(wire.EventRaised, t, value, thr), true
		}
		return wire.Event{}, false
	}
	k.peak = math.Max(k.peak, sc)
	if sc >= cfg.ClearRatio*thr {
		k.runN = 0
		return wire.Event{}, false
	}
	if k.runN == 0 {
		k.runSince = t
	}
	k.count()
	if int(k.runN) >= cfg.ClearReadings && t-k.runSince >= cfg.ClearDuration {
		ev := k.event(wire.EventCleared, t, value, thr)
		k.active, k.runN = false, 0
		return ev, true
	}
	return wire.Event{}, false
}

func (k *tracker) event(state wire.EventState, t int64, value, thr float64) wire.Event {
	sev := wire.SeverityWarning
	switch {
	case k.peak >= 0.9:
		sev = wire.SeverityMajor
	case k.peak >= 0.7:
		sev = wire.SeverityMinor
	}
	return wire.Event{
		Kind: wire.EventAnomaly, State: state, Severity: sev, Time: t,
		WindowStart: k.windowStart, WindowEnd: t, Value: value, Score: float32(k.peak), Threshold: thr,
	}
}
