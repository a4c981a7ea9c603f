package alert

import (
	"math"
	"slices"
	"time"
)

// Forecast is when a sensor is expected to cross a limit.
type Forecast struct {
	// Limit is the value it trends toward; ETA when it is expected to reach
	// it; PerHour the fitted slope in units per hour.
	Limit   float64
	ETA     time.Time
	PerHour float64
}

// Valid reports whether the forecast holds a prediction.
func (f Forecast) Valid() bool { return !f.ETA.IsZero() }

// Trend-fit policy constants.
const (
	// MinTrendPoints: fewer readings than this give no forecast; a slope
	// over a handful of points is noise.
	MinTrendPoints = 8
	// TrendPoints is how many recent readings the fit uses (Theil–Sen costs
	// n² / 2 slopes: 1,770 for 60).
	TrendPoints = 60
	// minAgreement: at least this share of pairwise slopes must have the
	// sign of the median slope, or the series is judged flat/noisy and no
	// forecast is made (a random walk agrees about half the time).
	minAgreement = 0.65
	// MaxHorizon: a crossing further away than this is not a forecast
	// anyone should act on.
	MaxHorizon = 30 * 24 * time.Hour
)

// TimeToLimit fits a robust line (Theil–Sen: the median of pairwise
// slopes, so a few spikes do not move it) through readings (times ts,
// values vs, any order) and returns when it crosses the nearest limit in
// its direction: limits are candidate values (alarm limits, the ends of
// the physical range); NaN entries are ignored. ok is false when there is
// no clear trend toward a limit within MaxHorizon.
func TimeToLimit(ts []time.Time, vs []float64, limits []float64) (Forecast, bool) {
	n := min(len(ts), len(vs))
	if n < MinTrendPoints {
		return Forecast{}, false
	}
	t0 := ts[0]
	for _, t := range ts[:n] {
		if t.After(t0) {
			t0 = t
		}
	}
	x := make([]float64, n)
	for i := range n {
		x[i] = ts[i].Sub(t0).Seconds()
	}
	slopes := make([]float64, 0, n*(n-1)/2)
	for i := range n {
		for j := i + 1; j < n; j++ {
			if dx := x[j] - x[i]; dx != 0 {
				slopes = append(slopes, (vs[j]-vs[i])/dx)
			}
		}
	}
	if len(slopes) == 0 {
		return Forecast{}, false
	}
	slope := median(slopes)
	if slope == 0 || math.IsNaN(slope) {
		return Forecast{}, false
	}
	agree := 0
	for _, s := range slopes {
		if (s > 0) == (slope > 0) && s != 0 {
			agree++
		}
	}
	if float64(agree) < minAgreement*float64(len(slopes)) {
		return Forecast{}, false
	}
	res := make([]float64, n)
	for i := range n {
		res[i] = vs[i] - slope*x[i]
	}
	now := median(res) // fitted value at t0, the newest reading
	best := math.NaN()
	for _, l := range limits {
		if math.IsNaN(l) || math.IsInf(l, 0) {
			continue
		}
		if slope > 0 && l > now && (math.IsNaN(best) || l < best) {
			best = l
		}
		if slope < 0 && l < now && (math.IsNaN(best) || l > best) {
			best = l
		}
	}
	if math.IsNaN(best) {
		return Forecast{}, false
	}
	secs := (best - now) / slope
	if secs > MaxHorizon.Seconds() {
		return Forecast{}, false
	}
	return Forecast{Limit: best, ETA: t0.Add(time.Duration(secs * float64(time.Second))).UTC(), PerHour: slope * 3600}, true
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}
