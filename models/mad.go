package models

import "math"

// MADConfig configures a rolling median/MAD detector.
type MADConfig struct {
	// Window is the number of recent readings the median and MAD are taken
	// over. 128 gives a robust estimate while following changes of level
	// within about half a window.
	Window int `json:"window"`
	// Clip is how many robust standard deviations an anomalous reading is
	// clipped to before it enters the window, so a lasting fault moves the
	// window only gradually instead of being absorbed in Window/2 readings.
	Clip float64 `json:"clip"`
	// Warmup is the number of readings that only fill the window before
	// the detector scores (they score 0 and are not used to calibrate):
	// the median and MAD of a handful of readings are too unstable to
	// call anything anomalous. 0 means DefaultWarmup; it is at least 8 and
	// at most Window.
	Warmup int `json:"warmup,omitempty"`
	// MinTail is how many z-scores after the warm-up the detector spends
	// calibrating: it learns their distribution (grey-zone values in full,
	// so a sensor's real tail replaces the normal prior) and reports only
	// scores ≥ calibScore (near-certain outliers). The z-scores of a
	// short window on a slow, smooth signal (a bearing temperature) are
	// far wider than the prior says, and trusting it raised false events
	// minutes after a fresh start. 0 for none; the level detector of the
	// ensemble uses 300, the spike detector none (its residuals are
	// close to the prior, and it catches steps right after the warm-up).
	MinTail   int     `json:"min_tail,omitempty"`
	Threshold float64 `json:"threshold"`
}

// DefaultMADConfig returns the defaults used by the ensemble.
func DefaultMADConfig() MADConfig {
	return MADConfig{Window: 128, Clip: 3, Warmup: DefaultWarmup, Threshold: DefaultThreshold}
}

// MAD scores |x − median| / (1.4826·MAD) over a rolling window: a robust
// z-score that outliers inside the window barely move. It costs O(Window)
// per reading (sorted-window insert/delete and a merge walk for the MAD).
type MAD struct {
	// window, minTail, clip and thr are the MADConfig in effect (its
	// Warmup is warm), kept compactly: 20,000 sensors hold two MADs each.
	window  int32
	minTail int32
	clip    float64
	thr     float64
	// The window in ascending order (window.go), each reading stored as
	// an offset from anchor, rounded to 24 bits of a float32 (a 15-bit
	// mantissa, within 1.5e-5 of the offset): a sensor far from zero
	// (101325.12 Pa) keeps its resolution, because the offsets of the
	// readings that set the median and the MAD are small. The anchor
	// follows the median (reanchor) so they stay small when the signal
	// drifts. With its ring slot a reading takes 4 bytes, where a float64
	// and a uint16 slot took 10.
	win8   []uint32 // Window ≤ 256
	win16  []uint64 // larger windows
	anchor float64
	tail   tail16
	lastZ  float64
	// longScale is a slow average of the window's scale while normal: a
	// floor (a fifth of it) keeps a window that a stuck or dropped-out
	// sensor filled with one value from making every later reading look
	// infinitely anomalous.
	longScale float64
	prev      float64
	// scale caches the robust scale between refreshes.
	scale float64
	head  int32
	// run counts consecutive alarms (saturating); after Window of them the
	// change is accepted and readings enter the window unclipped, so the
	// detector can never lock itself into alarming.
	run int32
	// same counts exact repeats of the previous input (saturating); past
	// maxRepeats they are scored but not learnt (a stuck sensor is the
	// stuck detector's business and must not collapse the window's
	// spread).
	same int32
	tick int32
	// warm is the effective warm-up (see MADConfig.Warmup).
	warm int32
	// learnt counts z-scores seen after the warm-up, up to MinTail.
	learnt int32
}

// calibScore is the score a z must reach to be reported while the detector
// is still calibrating (MADConfig.MinTail): above the early false alarms
// measured on slow signals (0.76–0.91, edge/internal/detect
// TestFreshPlantIsQuiet) and below what a gross step scores, so a 16σ step
// right after the warm-up is still raised (TestStepAfterShortWarmupIsRaised).
const calibScore = 0.95

// maxRepeats is how many exact repeats in a row the window still learns.
const maxRepeats = 8

// NewMAD returns a MAD detector.
func NewMAD(cfg MADConfig) *MAD {
	d := new(MAD)
	d.init(cfg, nil)
	return d
}

// slot8Max is the largest window whose ring positions fit a byte.
const slot8Max = 1 << 8

// init sets up d in place (the ensemble holds its MADs by value). The
// window is kept in win8 if it can hold it, else allocated.
func (d *MAD) init(cfg MADConfig, win8 []uint32) {
	if cfg.Window < 8 {
		cfg.Window = 8
	}
	if cfg.Window > maxWindow {
		cfg.Window = maxWindow
	}
	warm := cfg.Warmup
	if warm == 0 {
		warm = DefaultWarmup
	}
	warm = min(max(warm, 8), cfg.Window)
	*d = MAD{
		window:  int32(cfg.Window),
		minTail: int32(min(max(cfg.MinTail, 0), math.MaxInt32)),
		clip:    cfg.Clip,
		thr:     cfg.Threshold,
		warm:    int32(warm),
		tail:    madPrior,
	}
	switch {
	case cfg.Window > slot8Max:
		d.win16 = make([]uint64, 0, cfg.Window)
	case cap(win8) >= cfg.Window:
		d.win8 = win8[:0:cfg.Window]
	default:
		d.win8 = make([]uint32, 0, cfg.Window)
	}
}

// madPrior is the calibration every MAD starts from: the normal prior of
// a |z-score| (a constant, copied by value into each detector).
var madPrior = newTail16(madMinScale, halfNormalPrior(50))

// madMinScale is the MinScale of a MAD's calibration (in units of z).
const madMinScale = 0.1

// Threshold implements Detector.
func (d *MAD) Threshold() float64 { return d.thr }

// Z returns the signed robust z-score of the last reading.
func (d *MAD) Z() float64 { return d.lastZ }

// madRefresh is how often (in readings) the MAD is recomputed; the median
// is exact for every reading. The spread of a 128-reading window cannot
// move much in 4 readings, and the merge walk is the detector's main cost.
const madRefresh = 4

// medianScale returns the window's median and robust scale.
func (d *MAD) medianScale() (med, scale float64) {
	if d.win16 != nil {
		med = winMedian(d.win16)
	} else {
		med = winMedian(d.win8)
	}
	d.tick++
	if d.scale > 0 && d.tick < madRefresh {
		return d.anchor + med, d.scale
	}
	d.tick = 0
	var dev float64
	var meanAbs bool
	if d.win16 != nil {
		dev, meanAbs = winMAD(d.win16, med)
	} else {
		dev, meanAbs = winMAD(d.win8, med)
	}
	scale = 1.4826 * dev
	if meanAbs {
		// Quantised window with more than half the values equal: the mean
		// absolute deviation (×1.2533, its ratio to σ for a normal
		// distribution).
		scale = 1.2533 * dev
	}
	abs := d.anchor + med
	if f := scaleFloor(abs); scale < f {
		scale = f
	}
	d.scale = scale
	if math.Abs(med) > reanchorScales*scale {
		d.reanchor(abs)
	}
	return abs, scale
}

// reanchorScales is how far (in robust scales) the median may move from
// the anchor before the window is re-stored relative to it: a stored
// offset of 16 scales still resolves 1/4,000 of a scale (and the readings
// near the median far better), and a drifting signal re-stores its
// window only every 16 scales of drift.
const reanchorScales = 16

// reanchor re-stores the window as offsets from a.
func (d *MAD) reanchor(a float64) {
	if d.win16 != nil {
		winShift(d.win16, d.anchor, a)
	} else {
		winShift(d.win8, d.anchor, a)
	}
	d.anchor = a
}

// offset32 is v − a as a float32, clamped to the float32 range: a finite
// reading too far away to store (1e300) is an extreme either way.
func offset32(v, a float64) float32 {
	x := v - a
	if x > math.MaxFloat32 {
		x = math.MaxFloat32
	} else if x < -math.MaxFloat32 {
		x = -math.MaxFloat32
	}
	return float32(x)
}

// maxWindow is the largest window a slot index (uint16) can address; it
// is also the limit FromArtifact enforces on trained configs.
const maxWindow = 1 << 16

// insert adds v to the window, dropping the oldest reading when it is
// full.
func (d *MAD) insert(v float64) {
	if d.len() == 0 {
		d.anchor = v
	}
	x := offset32(v, d.anchor)
	if d.win16 != nil {
		d.win16 = winInsert(d.win16, int(d.window), int(d.head), x)
	} else {
		d.win8 = winInsert(d.win8, int(d.window), int(d.head), x)
	}
	d.head++
	if d.head == d.window {
		d.head = 0
	}
}

// len is the number of readings in the window.
func (d *MAD) len() int { return len(d.win8) + len(d.win16) }

// Update implements Detector.
func (d *MAD) Update(_ int64, v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	if v == d.prev {
		d.same = min(d.same+1, math.MaxInt32-1)
	} else {
		d.same, d.prev = 0, v
	}
	if d.len() < int(d.warm) {
		d.insert(v)
		return 0
	}
	med, scale := d.medianScale()
	if f := 0.3 * d.longScale; scale < f {
		scale = f
	}
	z := (v - med) / scale
	d.lastZ = z
	az := math.Abs(z)
	s := d.tail.Score(az)
	out := s
	calibrating := d.learnt < d.minTail
	if calibrating {
		// Calibrating: learn as usual (an outlier is learnt at
		// alarmWeight and clipped), but report only the near-certain.
		d.learnt++
		if s < calibScore {
			out = 0
		}
	}
	if s >= d.thr {
		d.run = min(d.run+1, math.MaxInt32-1)
		if d.run < d.window {
			c := d.clip * scale
			v = math.Max(med-c, math.Min(med+c, v))
		}
		d.tail.ObserveWeighted(az, alarmWeight, madMinScale)
	} else if d.same > maxRepeats {
		d.run = 0
		return out
	} else {
		d.run = 0
		w := learnWeight(s, d.thr)
		if calibrating {
			// While calibrating, the grey zone is learnt in full: the
			// prior's tail is the guess being corrected.
			w = 1
		}
		d.tail.ObserveWeighted(az, w, madMinScale)
		if d.longScale == 0 {
			d.longScale = scale
		} else {
			d.longScale += 0.002 * (scale - d.longScale)
		}
	}
	d.insert(v)
	return out
}

// diffRef is how many previous readings Diff takes the median of as its
// reference. A step then stands out at full size in diffRef/2+1
// consecutive residuals (two with 3) where a first difference shows it
// once, and a lone spike still stands out once, because the median ignores
// it. Chosen by measurement (QUALITY.md): with 3 the spike detector's F1
// rose from 0.68 to 0.71 and the ensemble's stayed 0.81; with 5 the
// residual carries more of the signal's wander and both fell (0.66, 0.80).
const diffRef = 3

// Diff feeds the residual of a stream against the median of its previous
// diffRef readings to another detector: spikes and sudden jumps of a
// smooth, autocorrelated signal stand out in it long before they stand
// out in the level, and a short median follows slow wander and daily
// patterns that a level detector's window must tolerate. Until diffRef
// readings are seen the reference is the median of those there are.
type Diff struct {
	inner Detector
	ref   diffRef3
}

// diffRef3 holds the last diffRef readings of a Diff.
type diffRef3 struct {
	ring [diffRef]float64
	n    int32
	head int32
}

// NewDiff wraps inner.
func NewDiff(inner Detector) *Diff { return &Diff{inner: inner} }

// Threshold implements Detector.
func (d *Diff) Threshold() float64 { return d.inner.Threshold() }

// Update implements Detector.
func (d *Diff) Update(t int64, v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	s := 0.0
	if d.ref.n > 0 {
		s = d.inner.Update(t, v-d.ref.median())
	}
	d.ref.push(v)
	return s
}

// push adds reading v, dropping the oldest of diffRef.
func (d *diffRef3) push(v float64) {
	d.ring[d.head] = v
	d.head = (d.head + 1) % diffRef
	if d.n < diffRef {
		d.n++
	}
}

// median returns the median of the last n readings (insertion sort of a
// copy on the stack: no allocation).
func (d *diffRef3) median() float64 {
	var a [diffRef]float64
	n := int(d.n)
	copy(a[:n], d.ring[:n])
	for i := 1; i < n; i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
	if n%2 == 1 {
		return a[n/2]
	}
	return (a[n/2-1] + a[n/2]) / 2
}
