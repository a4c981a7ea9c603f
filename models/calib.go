package models

import "math"

// Decades is the number of decades of tail probability that span the score
// range: score = -log10(p)/Decades. With 10, a score of 0.5 is p = 1e-5 and
// a score of 1 is p ≤ 1e-10. Fixed for all detectors so that their scores
// are comparable.
const Decades = 10.0

// DefaultThreshold is the decision threshold on the score scale used by the
// built-in detectors: 0.55 is a tail probability of about 3e-6 per reading.
// It was chosen by measurement on the labelled evaluation set (see
// models/eval TestSweep and QUALITY.md): F1 is flat between 0.5 and 0.6,
// and of that plateau we took the middle, which halves false alarms
// compared with 0.5 for a few points of recall — real data has heavier
// tails than any simulator. It is not tuned per fault kind.
const DefaultThreshold = 0.55

// learnWeight is the weight with which a statistic that scored s under
// threshold thr is learnt: fully while clearly normal (below half the
// threshold), at alarmWeight in the grey zone and above it, so a developing
// fault that scores just under the threshold does not teach the
// calibration that it is normal.
func learnWeight(s, thr float64) float64 {
	if s < 0.5*thr {
		return 1
	}
	return alarmWeight
}

// alarmWeight is the weight of an alarming statistic in a Tail (see
// ObserveWeighted): 1/20 of a normal one.
const alarmWeight = 0.05

// ScoreFromP maps a tail probability to a score in [0,1].
func ScoreFromP(p float64) float64 {
	if !(p < 1) { // also catches NaN
		return 0
	}
	if p <= 0 {
		return 1
	}
	s := -math.Log10(p) / Decades
	if s > 1 {
		return 1
	}
	return s
}

// PFromScore is the inverse of ScoreFromP.
func PFromScore(s float64) float64 { return math.Pow(10, -s*Decades) }

// Combine merges the scores of m tests of the same reading (or row) into one
// score with a Bonferroni correction: p = min(1, m·min p_i). It is how the
// ensemble and a multi-channel row are scored.
func Combine(scores ...float64) float64 {
	m := 0
	best := 0.0
	for _, s := range scores {
		if math.IsNaN(s) {
			continue
		}
		m++
		if s > best {
			best = s
		}
	}
	return combineMax(best, m)
}

func combineMax(best float64, m int) float64 {
	if m <= 1 {
		return best
	}
	s := best - math.Log10(float64(m))/Decades
	if s < 0 {
		return 0
	}
	return s
}

// Tail bin layout: geometric edges from tailS0 growing by tailRatio, so one
// table covers statistics from 0.01 to about 1e4 with ±10% resolution. A
// statistic is always ≥ 0 (|z|, a CUSUM sum, a variance ratio, T², SPE).
const (
	tailBins  = 80
	tailS0    = 0.01
	tailRatio = 1.2
	// tailUpper is the upper fraction above which the exponential tail
	// takes over from the histogram: beyond the 99th percentile there are
	// too few samples to count, so the tail is extrapolated (peaks over
	// threshold with an exponential excess distribution).
	tailUpper = 0.01
	// tailRefresh is how often (in observations) the cached quantiles are
	// recomputed; the histogram scan is O(tailBins).
	tailRefresh = 32
)

// Tail is an online estimate of the distribution of a non-negative
// statistic under normal operation. It keeps a log-binned histogram (a fixed
// array of float32 counts — ample for counts bounded by Cap — no
// allocation) with exponential forgetting (counts are halved when
// they exceed Cap), and maps a statistic to an upper-tail probability: the
// empirical fraction up to the 99th percentile, and beyond it an exponential
// tail whose scale is fitted from the 90th and 99th percentiles. This makes
// the score adapt to heavy-tailed or quantised sensors without a parametric
// assumption, while staying defined far beyond anything seen in training.
//
// The zero value is not usable; use NewTail.
type Tail struct {
	counts [tailBins]float32
	total  float64
	// Cap bounds the total count; with Cap N the histogram remembers about
	// the last N observations.
	Cap float64
	// MinScale is the smallest exponential tail scale allowed, in the
	// statistic's units. It stops a near-constant statistic from making
	// every tiny deviation infinitely significant.
	MinScale float64
	// MinCount is the number of observations before Score returns non-zero.
	MinCount float64

	since int
	q90   float64
	q99   float64
	beta  float64
}

// NewTail returns a Tail seeded with prior pseudo-observations (for example
// quantiles of the statistic's reference distribution) so that scores are
// sensible before the histogram has learnt the sensor.
func NewTail(capacity, minScale, minCount float64, prior []float64) Tail {
	t := Tail{Cap: capacity, MinScale: minScale, MinCount: minCount}
	for _, s := range prior {
		t.add(s, 1)
	}
	t.refresh()
	return t
}

func tailBin(s float64) int {
	if !(s >= tailS0) {
		return 0
	}
	i := int(math.Log(s/tailS0)/math.Log(tailRatio)) + 1
	if i >= tailBins {
		return tailBins - 1
	}
	return i
}

// tailEdges[i] is the upper edge of bin i (a constant table, computed
// once: edge i = tailS0·tailRatio^i).
var tailEdges = func() (e [tailBins]float64) {
	for i := range e {
		e[i] = tailS0 * math.Pow(tailRatio, float64(i))
	}
	return e
}()

// binLo and binHi bound bin i.
func binLo(i int) float64 {
	if i == 0 {
		return 0
	}
	return tailEdges[i-1]
}

func binHi(i int) float64 { return tailEdges[i] }

func (t *Tail) add(s float64, w float64) {
	if math.IsNaN(s) || s < 0 {
		return
	}
	t.counts[tailBin(s)] += float32(w)
	t.total += w
	if t.Cap > 0 && t.total > t.Cap {
		for i := range t.counts {
			t.counts[i] *= 0.5
		}
		t.total *= 0.5
	}
}

// Observe adds one statistic value seen under (presumed) normal operation.
func (t *Tail) Observe(s float64) { t.ObserveWeighted(s, 1) }

// ObserveWeighted adds a statistic value with weight w. Detectors add the
// values they alarm on with a small weight: a fault barely moves the
// calibration, yet a sensor whose "anomalies" are in fact its normal
// behaviour is learnt eventually instead of alarming forever.
func (t *Tail) ObserveWeighted(s, w float64) {
	t.add(s, w)
	t.since++
	if t.since >= tailRefresh {
		t.refresh()
	}
}

// Count is the (decayed) number of observations.
func (t *Tail) Count() float64 { return t.total }

// quantile returns the value below which a fraction 1-upper of the mass
// lies, interpolating geometrically inside the bin.
func (t *Tail) quantile(upper float64) float64 {
	return histQuantile(&t.counts, t.total, upper)
}

// histQuantile is the quantile of a histogram's counts (of any unit, with
// total their sum) with the share upper of the counts above it,
// interpolating geometrically inside the bin; 0 for an empty histogram.
func histQuantile[C float32 | uint16](counts *[tailBins]C, total, upper float64) float64 {
	if total <= 0 {
		return 0
	}
	want := upper * total
	acc := 0.0
	for i := tailBins - 1; i >= 0; i-- {
		c := float64(counts[i])
		if acc+c >= want {
			if c == 0 {
				return binLo(i)
			}
			f := (want - acc) / c // fraction of this bin above the quantile
			lo, hi := binLo(i), binHi(i)
			return hi - f*(hi-lo)
		}
		acc += c
	}
	return 0
}

func (t *Tail) refresh() {
	t.since = 0
	t.q90 = t.quantile(0.10)
	t.q99 = t.quantile(tailUpper)
	b := (t.q99 - t.q90) / math.Ln10
	if m := 0.1 * t.q99; b < m {
		b = m
	}
	if b < t.MinScale {
		b = t.MinScale
	}
	t.beta = b
}

// P returns the estimated probability that a normal statistic is ≥ s.
func (t *Tail) P(s float64) float64 {
	if math.IsNaN(s) || t.total <= 0 {
		return 1
	}
	if s > t.q99 {
		return tailUpper * math.Exp(-(s-t.q99)/t.beta)
	}
	// Empirical upper fraction: bins above s plus the part of s's bin
	// above it.
	i := tailBin(s)
	acc := 0.0
	for j := tailBins - 1; j > i; j-- {
		acc += float64(t.counts[j])
	}
	lo, hi := binLo(i), binHi(i)
	if hi > lo {
		acc += float64(t.counts[i]) * (hi - s) / (hi - lo)
	}
	p := acc / t.total
	if p < tailUpper {
		p = tailUpper
	}
	return p
}

// Score maps a statistic to a calibrated score in [0,1]; 0 until MinCount
// observations have been made.
func (t *Tail) Score(s float64) float64 {
	if t.total < t.MinCount {
		return 0
	}
	return ScoreFromP(t.P(s))
}

// halfNormalPrior returns n quantiles of |Z| for a standard normal Z, the
// reference distribution of a |z-score| before a sensor is learnt.
func halfNormalPrior(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		u := (float64(i) + 0.5) / float64(n)
		out[i] = math.Sqrt2 * math.Erfinv(u)
	}
	return out
}

// tail16 is a Tail with 16-bit counts for the detectors every sensor of
// the default ensemble holds twice or more (MAD, Spread): 184 bytes
// instead of 384. Its MinScale is a constant of the detector that owns
// it, passed to ObserveWeighted rather than stored. Counts are kept in units of 1/tail16Unit observation,
// so the weights detectors learn with (1 and alarmWeight) are exact.
// Cap is tail16Cap observations and MinCount 0. A bin that would
// overflow 16 bits halves the histogram early, as reaching Cap does: only
// a statistic that puts more than 3,276 observations (a sixth of Cap) in
// one ±10% bin — a quantised sensor whose z-score is often exactly the
// same — forgets sooner than Tail would.
type tail16 struct {
	counts [tailBins]uint16
	total  uint32 // sum of counts, in units
	since  int32
	// q99 and beta are the fitted tail (see Tail); q90 is only needed to
	// fit it.
	q99, beta float64
}

const (
	// tail16Unit is the number of count units per observation: 1/20 is
	// alarmWeight, the smallest weight a detector learns with.
	tail16Unit = 20
	// tail16Cap is Tail.Cap of the ensemble's detectors, in observations.
	tail16Cap = 20000
)

// newTail16 is NewTail(tail16Cap, minScale, 0, prior) with 16-bit counts.
func newTail16(minScale float64, prior []float64) tail16 {
	var t tail16
	for _, s := range prior {
		t.add(s, 1)
	}
	t.refresh(minScale)
	return t
}

func (t *tail16) add(s, w float64) {
	if math.IsNaN(s) || s < 0 || !(w > 0) {
		return
	}
	var u uint32
	switch w {
	case 1:
		u = tail16Unit
	case alarmWeight:
		u = 1
	default:
		u = max(uint32(math.Round(min(w, 1)*tail16Unit)), 1)
	}
	i := tailBin(s)
	if uint32(t.counts[i])+u > math.MaxUint16 {
		t.halve()
	}
	t.counts[i] += uint16(u)
	t.total += u
	if t.total > tail16Cap*tail16Unit {
		t.halve()
	}
}

// halve forgets half of every count, rounding odd counts to even so that
// the rounding does not drift the histogram up or down.
func (t *tail16) halve() {
	t.total = 0
	for i, c := range t.counts {
		h := c / 2
		if c&1 == 1 && h&1 == 1 {
			h++
		}
		t.counts[i] = h
		t.total += uint32(h)
	}
}

// ObserveWeighted is Tail.ObserveWeighted for a Tail with MinScale
// minScale; weights above 1 count as 1.
func (t *tail16) ObserveWeighted(s, w, minScale float64) {
	t.add(s, w)
	t.since++
	if t.since >= tailRefresh {
		t.refresh(minScale)
	}
}

func (t *tail16) refresh(minScale float64) {
	t.since = 0
	q90 := t.quantile(0.10)
	t.q99 = t.quantile(tailUpper)
	b := (t.q99 - q90) / math.Ln10
	if m := 0.1 * t.q99; b < m {
		b = m
	}
	if b < minScale {
		b = minScale
	}
	t.beta = b
}

// quantile is Tail.quantile (counts and total in the same unit).
func (t *tail16) quantile(upper float64) float64 {
	return histQuantile(&t.counts, float64(t.total), upper)
}

// countAtLeast reports whether Tail.Count would be ≥ n (without a
// division).
func (t *tail16) countAtLeast(n float64) bool { return float64(t.total) >= n*tail16Unit }

// Score is Tail.Score.
func (t *tail16) Score(s float64) float64 { return ScoreFromP(t.p(s)) }

// p is Tail.P; the counts above s's bin are summed as integers (exact).
func (t *tail16) p(s float64) float64 {
	if math.IsNaN(s) || t.total == 0 {
		return 1
	}
	if s > t.q99 {
		return tailUpper * math.Exp(-(s-t.q99)/t.beta)
	}
	i := tailBin(s)
	// Four independent sums: the loop is the tail probability's main
	// cost, and one accumulator serialises it.
	cs := t.counts[i+1:]
	var n0, n1, n2, n3 uint32
	for len(cs) >= 4 {
		n0 += uint32(cs[0])
		n1 += uint32(cs[1])
		n2 += uint32(cs[2])
		n3 += uint32(cs[3])
		cs = cs[4:]
	}
	for _, c := range cs {
		n0 += uint32(c)
	}
	acc := float64(n0 + n1 + n2 + n3)
	lo, hi := binLo(i), binHi(i)
	if hi > lo {
		acc += float64(t.counts[i]) * (hi - s) / (hi - lo)
	}
	p := acc / float64(t.total)
	if p < tailUpper {
		p = tailUpper
	}
	return p
}
