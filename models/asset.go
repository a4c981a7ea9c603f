package models

import "math"

// Asset scores the rows of one asset: a univariate detector per sensor and
// optionally a RowDetector over all of them (for example a PCA), combined
// into one row score with a Bonferroni correction. It is the one code path
// shared by the live edge stage (for sensors grouped into an asset) and by
// offline evaluation and `sm-edge score`.
type Asset struct {
	sensors []Detector
	row     RowDetector
	scores  []float64
	rowLast float64
	thr     float64
}

// NewAsset combines per-sensor detectors and an optional row detector
// (nil for none). The threshold of the combined score is thr.
func NewAsset(sensors []Detector, row RowDetector, thr float64) *Asset {
	return &Asset{sensors: sensors, row: row, scores: make([]float64, len(sensors)), thr: thr}
}

// Width is the number of columns of a row.
func (a *Asset) Width() int {
	if len(a.sensors) == 0 && a.row != nil {
		return a.row.Width()
	}
	return len(a.sensors)
}

// Threshold is the threshold of the combined score.
func (a *Asset) Threshold() float64 { return a.thr }

// Row returns the row detector, or nil.
func (a *Asset) Row() RowDetector { return a.row }

// Update scores one row (NaN = missing value) and returns the combined
// score. SensorScores and RowScore give the parts.
func (a *Asset) Update(t int64, x []float64) float64 {
	best := 0.0
	m := 0
	for i, d := range a.sensors {
		v := math.NaN()
		if i < len(x) {
			v = x[i]
		}
		s := d.Update(t, v)
		a.scores[i] = s
		m++
		if s > best {
			best = s
		}
	}
	a.rowLast = 0
	if a.row != nil {
		a.rowLast = a.row.UpdateRow(t, x)
		m++
		if a.rowLast > best {
			best = a.rowLast
		}
	}
	return combineMax(best, m)
}

// SensorScores returns the per-sensor scores of the last row (owned by a;
// valid until the next Update).
func (a *Asset) SensorScores() []float64 { return a.scores }

// RowScore returns the row detector's score of the last row.
func (a *Asset) RowScore() float64 { return a.rowLast }
