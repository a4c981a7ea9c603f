package models

import (
	"fmt"
	"math"
)

// EnsembleConfig configures the default, training-free ensemble.
type EnsembleConfig struct {
	// Components are the built-in detectors combined, by name (NameEWMA,
	// NameMAD, NameSpike, NameSpread, NameCUSUM, NameStuck).
	Components []string `json:"components"`
	Threshold  float64  `json:"threshold"`
}

// DefaultEnsembleConfig is the ensemble every sensor gets when no trained
// model applies: a robust level detector (rolling median/MAD: outliers,
// steps, stuck-at-offset), a spike detector on first differences (fast
// jumps on smooth signals), a spread detector (noise bursts, and the rising
// variance of wear) and a stuck-value detector. Each learns its sensor
// online; their scores are combined with a Bonferroni correction so adding
// a component does not add false alarms. CUSUM is left out by measurement:
// on the evaluation set it added no detected fault the others missed but
// added false alarms on wandering signals (QUALITY.md); use it alone
// (`--detector cusum`) for slow drifts on stationary signals.
func DefaultEnsembleConfig() EnsembleConfig {
	return EnsembleConfig{
		Components: []string{NameMAD, NameSpike, NameSpread, NameStuck},
		Threshold:  DefaultThreshold,
	}
}

// Ensemble runs several univariate detectors on one sensor and combines
// their scores.
type Ensemble struct {
	// Exactly one is set: std for the default component list, gen for
	// any other.
	std *stdEnsemble
	gen *genEnsemble
}

// genEnsemble is an Ensemble of any component list, one heap object per
// component.
type genEnsemble struct {
	cfg   EnsembleConfig
	parts []Detector
	last  []float64
}

// stdEnsemble is an Ensemble of the default components (DefaultEnsembleConfig's
// list, in its order) in one allocation: the parts by value, and the MADs'
// windows in arrays beside them. An edge holds one per sensor (20,000 of
// them), so the separate heap objects of the general form — interface
// boxes, per-part size-class rounding, the windows' own allocations — were
// a large share of its memory, and the direct calls save the dispatch.
type stdEnsemble struct {
	e      Ensemble
	level  MAD
	spike  MAD
	ref    diffRef3
	spread Spread
	stuck  Stuck
	last   [stdParts]float64
	// The MADs' windows (see MAD).
	levelWin, spikeWin [stdWindow]uint32
}

// stdParts is the number of default components.
const stdParts = 4

// stdWindow is the window of the default MADs (a larger one would be
// allocated by MAD.init instead).
const stdWindow = 128

// stdNames is the default component list (a constant table): every
// default ensemble shares it instead of holding its caller's copy (New
// makes one per sensor).
var stdNames = [stdParts]string{NameMAD, NameSpike, NameSpread, NameStuck}

// isStd reports whether names is the default component list.
func isStd(names []string) bool {
	return len(names) == stdParts && [stdParts]string(names) == stdNames
}

// newStdEnsemble builds the default components exactly as builtinAt
// would, in place.
func newStdEnsemble(cfg EnsembleConfig) *Ensemble {
	x := new(stdEnsemble)
	x.e.std = x
	lc := DefaultMADConfig()
	lc.MinTail = levelMinTail
	lc.Threshold = cfg.Threshold
	sc := DefaultMADConfig()
	sc.Threshold = cfg.Threshold
	x.level.init(lc, x.levelWin[:0])
	x.spike.init(sc, x.spikeWin[:0])
	pc := DefaultSpreadConfig()
	pc.Threshold = cfg.Threshold
	x.spread = spreadOf(pc)
	tc := DefaultStuckConfig()
	tc.Threshold = cfg.Threshold
	x.stuck = stuckOf(tc)
	return &x.e
}

// NewEnsemble builds an ensemble; unknown component names are skipped by
// construction through ValidateEnsemble (use it for untrusted configs).
func NewEnsemble(cfg EnsembleConfig) *Ensemble {
	if isStd(cfg.Components) {
		return newStdEnsemble(cfg)
	}
	return newEnsembleOf(cfg)
}

// newEnsembleOf builds an ensemble of any component list from the
// built-in constructors, one heap object per component.
func newEnsembleOf(cfg EnsembleConfig) *Ensemble {
	e := &genEnsemble{cfg: cfg}
	for _, name := range cfg.Components {
		if name == NameEnsemble {
			continue
		}
		f, ok := builtinAt(name, cfg.Threshold)
		if !ok {
			continue
		}
		e.parts = append(e.parts, f())
	}
	e.last = make([]float64, len(e.parts))
	return &Ensemble{gen: e}
}

// ValidateEnsemble reports unknown or recursive component names.
func ValidateEnsemble(cfg EnsembleConfig) error {
	if len(cfg.Components) == 0 {
		return fmt.Errorf("ensemble: no components")
	}
	for _, name := range cfg.Components {
		if _, ok := builtin(name); !ok || name == NameEnsemble {
			return fmt.Errorf("ensemble: unknown component %q", name)
		}
	}
	if !(cfg.Threshold > 0 && cfg.Threshold <= 1) {
		return fmt.Errorf("ensemble: threshold %v not in (0,1]", cfg.Threshold)
	}
	return nil
}

// Threshold implements Detector.
func (e *Ensemble) Threshold() float64 {
	if e.std != nil {
		return e.std.level.thr
	}
	return e.gen.cfg.Threshold
}

// Components returns the component names and their last scores. Both
// belong to the ensemble (the names may be shared with others): read them,
// do not modify them.
func (e *Ensemble) Components() ([]string, []float64) {
	if e.std != nil {
		return stdNames[:stdParts:stdParts], e.std.last[:]
	}
	return e.gen.cfg.Components, e.gen.last
}

// Update implements Detector.
func (e *Ensemble) Update(t int64, v float64) float64 {
	if e.std != nil {
		return e.std.update(t, v)
	}
	g := e.gen
	best := 0.0
	for i, d := range g.parts {
		s := d.Update(t, v)
		g.last[i] = s
		if s > best {
			best = s
		}
	}
	return combineMax(best, len(g.parts))
}

// update is Ensemble.Update of the default components (the spike
// detector is Diff's Update on spike and ref).
func (x *stdEnsemble) update(t int64, v float64) float64 {
	x.last[0] = x.level.Update(t, v)
	s := 0.0
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		if x.ref.n > 0 {
			s = x.spike.Update(t, v-x.ref.median())
		}
		x.ref.push(v)
	}
	x.last[1] = s
	x.last[2] = x.spread.Update(t, v)
	x.last[3] = x.stuck.Update(t, v)
	best := 0.0
	for _, s := range x.last {
		if s > best {
			best = s
		}
	}
	return combineMax(best, stdParts)
}

// OnlinePCA is the row detector of the default ensemble for an asset with
// several sensors: it collects the first Warmup complete rows, fits a PCA
// to them and then scores every row with it. Before it is fitted it scores
// 0. The fit allocates once; scoring does not.
type OnlinePCA struct {
	width  int
	warmup int
	cfg    PCAConfig
	buf    [][]float64
	pca    *PCA
	err    error
}

// NewOnlinePCA returns an OnlinePCA for rows of the given width.
func NewOnlinePCA(width, warmup int, cfg PCAConfig) *OnlinePCA {
	if warmup < 2*width+10 {
		warmup = 2*width + 10
	}
	return &OnlinePCA{width: width, warmup: warmup, cfg: cfg}
}

// Width implements RowDetector.
func (d *OnlinePCA) Width() int { return d.width }

// Threshold implements RowDetector.
func (d *OnlinePCA) Threshold() float64 { return d.cfg.Threshold }

// UpdateRow implements RowDetector.
func (d *OnlinePCA) UpdateRow(t int64, x []float64) float64 {
	if d.pca != nil {
		return d.pca.UpdateRow(t, x)
	}
	if d.err != nil || len(x) != d.width || !finite(x...) {
		return 0
	}
	if d.buf == nil {
		d.buf = make([][]float64, 0, d.warmup)
	}
	d.buf = append(d.buf, append(make([]float64, 0, d.width), x...))
	if len(d.buf) >= d.warmup {
		d.pca, d.err = TrainPCA(d.buf, d.cfg)
		d.buf = nil
	}
	return 0
}
