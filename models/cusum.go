package models

import "math"

// CUSUMConfig configures a two-sided CUSUM change detector.
type CUSUMConfig struct {
	// Alpha is the learning rate of the reference mean and variance. It is
	// slow (1/2000 readings) so that steps and drifts accumulate in the sums
	// before the reference follows them.
	Alpha float64 `json:"alpha"`
	// K is the allowance in long-run standard deviations (see CUSUM):
	// shifts smaller than K are ignored, shifts of about 2K are detected
	// fastest.
	K float64 `json:"k"`
	// Clip bounds each standardised reading so one spike cannot by itself
	// fill the sum (spikes are the level detectors' job).
	Clip   float64 `json:"clip"`
	Warmup int     `json:"warmup"`
	// Hold is how many consecutive alarming readings are reported before
	// the change is accepted as the new normal: the sums restart and the
	// reference jumps to the recent level. A drift that goes on alarms
	// again; a one-off step is reported once instead of for ever.
	Hold      int     `json:"hold"`
	Threshold float64 `json:"threshold"`
}

// DefaultCUSUMConfig returns the defaults used by the ensemble.
func DefaultCUSUMConfig() CUSUMConfig {
	return CUSUMConfig{Alpha: 0.0005, K: 0.25, Clip: 4, Warmup: 30, Hold: 60, Threshold: DefaultThreshold}
}

// CUSUM accumulates standardised deviations from a slow reference,
// S⁺ = max(0, S⁺ + z − K) and S⁻ = max(0, S⁻ − z − K), and scores
// max(S⁺, S⁻) through a Tail learnt online. It finds steps and slow drifts
// that are too small for the level detectors. While it alarms, the
// reference learns 20× slower so the change is not absorbed.
//
// Real sensor signals are autocorrelated, and a sum of autocorrelated
// deviations wanders far more than the textbook CUSUM assumes. So z is
// first scaled to long-run units by √((1−φ)/(1+φ)), φ the lag-one
// autocorrelation learnt online: a sustained shift is then measured
// against how much the signal's running mean really varies.
type CUSUM struct {
	cfg      CUSUMConfig
	n        int
	mean, m2 float64
	variance float64
	sp, sn   float64
	recent   float64 // fast EWMA of the value (rate 0.05)
	prevZ    float64
	c0, c1   float64 // EWMA of z² and z_t·z_{t−1}
	alarms   int
	tail     Tail
}

// NewCUSUM returns a CUSUM detector.
func NewCUSUM(cfg CUSUMConfig) *CUSUM {
	return &CUSUM{cfg: cfg, tail: NewTail(50000, 0.5, 0, nil)}
}

// Threshold implements Detector.
func (d *CUSUM) Threshold() float64 { return d.cfg.Threshold }

// Update implements Detector.
func (d *CUSUM) Update(_ int64, v float64) float64 {
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
		d.recent = d.mean
		return 0
	}
	d.recent += 0.05 * (v - d.recent)
	sd := math.Sqrt(d.variance)
	if f := scaleFloor(d.mean); sd < f {
		sd = f
	}
	diff := v - d.mean
	z := math.Max(-d.cfg.Clip, math.Min(d.cfg.Clip, diff/sd))
	phi := 0.0
	if d.c0 > 0 {
		phi = math.Max(0, math.Min(0.98, d.c1/d.c0))
	}
	zl := z * math.Sqrt((1-phi)/(1+phi))
	d.sp = math.Max(0, d.sp+zl-d.cfg.K)
	d.sn = math.Max(0, d.sn-zl-d.cfg.K)
	stat := math.Max(d.sp, d.sn)
	// The first readings after warm-up only settle φ and the reference;
	// their sums would teach the tail a startup transient.
	d.n++
	if d.n < d.cfg.Warmup+300 {
		d.c0 += 0.02 * (z*z - d.c0)
		d.c1 += 0.02 * (z*d.prevZ - d.c1)
		d.prevZ = z
		d.sp, d.sn = 0, 0
		d.mean += d.cfg.Alpha * diff
		d.variance = (1 - d.cfg.Alpha) * (d.variance + d.cfg.Alpha*diff*diff)
		return 0
	}
	s := 0.0
	if d.tail.Count() >= 200 {
		s = d.tail.Score(stat)
	}
	a := d.cfg.Alpha
	if s >= d.cfg.Threshold {
		a *= 0.05
		d.alarms++
		d.tail.ObserveWeighted(stat, alarmWeight)
		if d.cfg.Hold > 0 && d.alarms >= d.cfg.Hold {
			d.mean, d.sp, d.sn, d.alarms = d.recent, 0, 0, 0
			return s
		}
	} else {
		d.alarms = 0
		w := learnWeight(s, d.cfg.Threshold)
		d.tail.ObserveWeighted(stat, w)
		a *= w // a developing change must not pull the reference along
		const ac = 0.005
		d.c0 += ac * w * (z*z - d.c0)
		d.c1 += ac * w * (z*d.prevZ - d.c1)
	}
	d.prevZ = z
	d.mean += a * diff
	d.variance = (1 - a) * (d.variance + a*diff*diff)
	return s
}
