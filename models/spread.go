package models

import "math"

// SpreadConfig configures a noise-burst (variance change) detector.
type SpreadConfig struct {
	// Fast and Slow are the EWMA rates of the short- and long-term mean
	// square of the first differences; their ratio is the statistic.
	Fast      float64 `json:"fast"`
	Slow      float64 `json:"slow"`
	Warmup    int     `json:"warmup"`
	Threshold float64 `json:"threshold"`
}

// DefaultSpreadConfig returns the defaults used by the ensemble.
func DefaultSpreadConfig() SpreadConfig {
	return SpreadConfig{Fast: 0.1, Slow: 0.005, Warmup: 30, Threshold: DefaultThreshold}
}

// Spread detects a rise in noise (a loose mounting, a failing transducer,
// cavitation) as the ratio of the short-term to the long-term mean square
// of the first differences. Differencing removes the level, so daily
// patterns and slow drifts do not move it. The long-term estimate freezes
// while the detector alarms.
type Spread struct {
	cfg        SpreadConfig
	n          int
	prev       float64
	fast, slow float64
	tail       tail16
}

// spreadMinTail is how many ratios the spread detector's Tail must have
// learnt before it scores (after Warmup readings): its statistic is a ratio
// of mean squares, heavy-tailed on real and heavy-tailed sensors, whose
// 99th percentile — the base of the tail's extrapolation — cannot be
// estimated from a hundred values.
const spreadMinTail = 600

// spreadMinScale is the MinScale of the spread detector's calibration (in
// units of the variance ratio).
const spreadMinScale = 0.3

// NewSpread returns a Spread detector.
func NewSpread(cfg SpreadConfig) *Spread {
	d := spreadOf(cfg)
	return &d
}

// spreadOf returns a Spread by value (the ensemble holds it so).
func spreadOf(cfg SpreadConfig) Spread {
	return Spread{cfg: cfg, tail: newTail16(spreadMinScale, nil)}
}

// Threshold implements Detector.
func (d *Spread) Threshold() float64 { return d.cfg.Threshold }

// Update implements Detector.
func (d *Spread) Update(_ int64, v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	d.n++
	if d.n == 1 {
		d.prev = v
		return 0
	}
	dd := v - d.prev
	d.prev = v
	q := dd * dd
	if math.IsInf(q, 0) {
		return 1 // a jump beyond float range: anomalous, not learnt
	}
	if d.n <= d.cfg.Warmup {
		d.slow += (q - d.slow) / float64(d.n-1)
		d.fast = d.slow
		return 0
	}
	d.fast += d.cfg.Fast * (q - d.fast)
	den := d.slow
	if f := scaleFloor(d.prev); den < f*f {
		den = f * f
	}
	ratio := d.fast / den
	s := 0.0
	if d.tail.countAtLeast(spreadMinTail) {
		s = d.tail.Score(ratio)
	}
	if s < d.cfg.Threshold {
		d.tail.ObserveWeighted(ratio, learnWeight(s, d.cfg.Threshold), spreadMinScale)
		d.slow += d.cfg.Slow * (q - d.slow)
	} else {
		d.slow += d.cfg.Slow * 0.05 * (q - d.slow)
		d.tail.ObserveWeighted(ratio, alarmWeight, spreadMinScale)
	}
	return s
}
