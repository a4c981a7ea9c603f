package models

import "math"

// EWMAConfig configures an EWMA level detector.
type EWMAConfig struct {
	// Alpha is the weight of a new reading in the mean and variance; 1/Alpha
	// is the memory in readings. 0.01 adapts to changes slower than about a
	// hundred readings (daily patterns, slow load changes).
	Alpha float64 `json:"alpha"`
	// Absorb scales Alpha while the detector is alarming, so a fault is not
	// learnt as normal at the normal rate, yet a lasting change of operating
	// point is accepted eventually (after about 1/(Alpha·Absorb) readings).
	Absorb float64 `json:"absorb"`
	// Warmup readings are used to initialise mean and variance and get 0.
	Warmup    int     `json:"warmup"`
	Threshold float64 `json:"threshold"`
}

// DefaultEWMAConfig returns the defaults used by the ensemble.
func DefaultEWMAConfig() EWMAConfig {
	return EWMAConfig{Alpha: 0.01, Absorb: 0.1, Warmup: 20, Threshold: DefaultThreshold}
}

// EWMA scores |x-μ|/σ with an exponentially weighted mean μ and variance σ²
// that freeze (learn 10× slower) while the detector alarms. The statistic is
// calibrated online by a Tail.
type EWMA struct {
	cfg      EWMAConfig
	n        int
	mean, m2 float64 // Welford during warm-up
	variance float64
	tail     Tail
	lastZ    float64
}

// NewEWMA returns an EWMA detector.
func NewEWMA(cfg EWMAConfig) *EWMA {
	return &EWMA{cfg: cfg, tail: NewTail(20000, 0.1, 0, halfNormalPrior(50))}
}

// Threshold implements Detector.
func (d *EWMA) Threshold() float64 { return d.cfg.Threshold }

// Z returns the signed z-score of the last reading.
func (d *EWMA) Z() float64 { return d.lastZ }

// Update implements Detector.
func (d *EWMA) Update(_ int64, v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	if d.n < d.cfg.Warmup {
		d.n++
		delta := v - d.mean
		d.mean += delta / float64(d.n)
		d.m2 += delta * (v - d.mean)
		if d.n > 1 {
			d.variance = d.m2 / float64(d.n-1)
		}
		return 0
	}
	sd := math.Sqrt(d.variance)
	if f := scaleFloor(d.mean); sd < f {
		sd = f
	}
	diff := v - d.mean
	z := diff / sd
	d.lastZ = z
	az := math.Abs(z)
	s := d.tail.Score(az)
	a := d.cfg.Alpha
	if s >= d.cfg.Threshold {
		a *= d.cfg.Absorb
		d.tail.ObserveWeighted(az, alarmWeight)
	} else {
		d.tail.ObserveWeighted(az, learnWeight(s, d.cfg.Threshold))
	}
	d.mean += a * diff
	d.variance = (1 - a) * (d.variance + a*diff*diff)
	return s
}
