package models

import (
	"fmt"
	"math"
)

// Detector scores one sensor's stream, one reading at a time.
//
// Update consumes the reading at time t (Unix ns) with value v and returns
// its score in [0,1] (1 = certainly anomalous), computed from readings up to
// and including this one only. A NaN value is a missing reading: it scores 0
// and leaves the state unchanged (except for detectors that watch gaps).
// Update allocates nothing. A Detector is not safe for concurrent use.
//
// A fresh online detector has no baseline yet: during its warm-up (for the
// default ensemble's components, DefaultWarmup readings, longer for the
// spread detector) Update returns 0, so a newly started edge raises no
// anomaly flags or events until every sensor's detector can be trusted.
type Detector interface {
	Update(t int64, v float64) float64
	// Threshold is the score at or above which a reading is anomalous.
	Threshold() float64
}

// RowDetector scores the rows of one asset's sensors, one row at a time.
// UpdateRow must not retain x; NaN entries are missing values.
type RowDetector interface {
	UpdateRow(t int64, x []float64) float64
	Threshold() float64
	// Width is the number of columns UpdateRow expects.
	Width() int
}

// Built-in detector names, as accepted by New and `sm-edge score --detector`.
const (
	NameEnsemble = "ensemble"
	NameEWMA     = "ewma"
	NameMAD      = "mad"
	NameSpike    = "spike"
	NameSpread   = "spread"
	NameCUSUM    = "cusum"
	NameStuck    = "stuck"
	NamePCA      = "pca"
	NameLimits   = "limits"
)

// builtinNames lists the univariate built-ins, sorted.
func builtinNames() []string {
	return []string{NameCUSUM, NameEnsemble, NameEWMA, NameMAD, NameSpike, NameSpread, NameStuck}
}

// builtin returns a constructor with default settings for name.
func builtin(name string) (func() Detector, bool) { return builtinAt(name, DefaultThreshold) }

// builtinAt is builtin with the decision threshold thr (which also sets
// where the detector stops learning).
func builtinAt(name string, thr float64) (func() Detector, bool) {
	switch name {
	case NameEnsemble:
		c := DefaultEnsembleConfig()
		c.Threshold = thr
		return func() Detector { return NewEnsemble(c) }, true
	case NameEWMA:
		c := DefaultEWMAConfig()
		c.Threshold = thr
		return func() Detector { return NewEWMA(c) }, true
	case NameMAD:
		c := DefaultMADConfig()
		c.MinTail = levelMinTail
		c.Threshold = thr
		return func() Detector { return NewMAD(c) }, true
	case NameSpike:
		c := DefaultMADConfig()
		c.Threshold = thr
		return func() Detector { return NewDiff(NewMAD(c)) }, true
	case NameSpread:
		c := DefaultSpreadConfig()
		c.Threshold = thr
		return func() Detector { return NewSpread(c) }, true
	case NameCUSUM:
		c := DefaultCUSUMConfig()
		c.Threshold = thr
		return func() Detector { return NewCUSUM(c) }, true
	case NameStuck:
		c := DefaultStuckConfig()
		c.Threshold = thr
		return func() Detector { return NewStuck(c) }, true
	}
	return nil, false
}

// Builtins lists the names of the univariate detectors New accepts.
func Builtins() []string { return builtinNames() }

// New returns a built-in univariate detector with default settings.
func New(name string) (Detector, error) {
	f, ok := builtin(name)
	if !ok {
		return nil, fmt.Errorf("unknown detector %q (known: %v, and %q for rows)", name, Builtins(), NamePCA)
	}
	return f(), nil
}

// DefaultWarmup is the number of readings a built-in detector of the
// default ensemble sees before it may score a sensor anomalous (it scores 0
// until then): the level and spike detectors (MAD) fill their window with
// this many readings, the stuck detector learns how often the sensor
// repeats a value over this many changes. Twenty-five readings make a median and
// MAD stable enough to trust (the standard error of a MAD of n normal
// readings is about 1.2/√n of σ: ±23 % at 25, ±41 % at the former 8),
// while a large fault half a minute after start at 1 Hz is still caught.
// The spread detector needs longer (SpreadConfig.Warmup plus
// spreadMinTail ratios): the tail of a variance ratio cannot be estimated
// from a few dozen values.
const DefaultWarmup = 25

// levelMinTail is the level detector's MADConfig.MinTail: five minutes at
// 1 Hz. Measured on the demo's plant (20 seeds × 35 sensors × 1 h): events
// in the first five minutes fell from 12 to 2, events on the bearing
// temperature from 13 to 2, all events from 83 to 66.
const levelMinTail = 300

// scaleFloor keeps a spread estimate away from zero on (near-)constant or
// quantised signals, relative to the signal's level.
func scaleFloor(level float64) float64 { return 1e-9*math.Abs(level) + 1e-12 }
