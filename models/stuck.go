package models

import "math"

// StuckConfig configures a stuck-value detector.
type StuckConfig struct {
	// MinRun is the shortest run of identical readings that can score: a
	// value repeated a few times is common on slow-changing or quantised
	// signals.
	MinRun int `json:"min_run"`
	// Eps is the largest change still counted as "the same value"; 0 means
	// exactly equal (a frozen transmitter repeats its last value bit for
	// bit).
	Eps       float64 `json:"eps"`
	Threshold float64 `json:"threshold"`
}

// DefaultStuckConfig returns the defaults used by the ensemble.
func DefaultStuckConfig() StuckConfig {
	return StuckConfig{MinRun: 5, Threshold: DefaultThreshold}
}

// Stuck detects a sensor that repeats the same value for longer than its
// history makes plausible. It learns p0, the probability that a reading
// repeats the previous one (counts with forgetting and a Laplace prior), and
// scores a run of r repeats by its probability p0^r under independence. On
// a quantised signal that often repeats, p0 is high and long runs are
// needed; on a noisy analogue signal a handful of repeats is already
// suspicious. Repeats inside an alarming run are not learnt. It scores 0
// until it has seen DefaultWarmup consecutive pairs: p0 of a few pairs says
// nothing about how often the sensor repeats.
type Stuck struct {
	// minRun, eps and thr are the StuckConfig in effect, kept compactly
	// (every sensor of the default ensemble holds one).
	minRun int32
	run    int32
	eps    float64
	thr    float64
	// prev is the previous reading, NaN before the first (a NaN reading
	// is never stored).
	prev    float64
	repeats float64
	total   float64
}

// NewStuck returns a Stuck detector.
func NewStuck(cfg StuckConfig) *Stuck {
	d := stuckOf(cfg)
	return &d
}

// stuckOf returns a Stuck by value (the ensemble holds it so).
func stuckOf(cfg StuckConfig) Stuck {
	return Stuck{
		// A run longer than MaxInt32 readings (68 years at 1 Hz) is
		// never reached.
		minRun: int32(min(max(cfg.MinRun, 1), math.MaxInt32)),
		eps:    cfg.Eps,
		thr:    cfg.Threshold,
		prev:   math.NaN(),
	}
}

// Threshold implements Detector.
func (d *Stuck) Threshold() float64 { return d.thr }

// Run is the number of consecutive repeats of the current value.
func (d *Stuck) Run() int { return int(d.run) }

// Update implements Detector.
func (d *Stuck) Update(_ int64, v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	if math.IsNaN(d.prev) {
		d.prev = v
		return 0
	}
	same := math.Abs(v-d.prev) <= d.eps
	d.prev = v
	if !same {
		d.run = 0
		d.learn(0)
		return 0
	}
	d.run = min(d.run+1, math.MaxInt32-1) // saturating: 68 years at 1 Hz
	// Laplace prior: one repeat and one change in two pseudo-readings, plus
	// a floor so a sensor never seen repeating still needs several repeats.
	p0 := (d.repeats + 1) / (d.total + 2)
	s := 0.0
	if d.run >= d.minRun && d.total >= DefaultWarmup {
		s = ScoreFromP(math.Pow(p0, float64(d.run)))
	}
	if s < d.thr {
		d.learn(1)
	}
	return s
}

func (d *Stuck) learn(rep float64) {
	d.repeats += rep
	d.total++
	if d.total > 20000 {
		d.repeats *= 0.5
		d.total *= 0.5
	}
}
