package models

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// PCAConfig configures the training of a PCA detector.
type PCAConfig struct {
	// VarianceKept is the share of the standardised variance the retained
	// principal components must explain; the rest is the residual space
	// watched by SPE.
	VarianceKept float64 `json:"variance_kept"`
	// MaxComponents caps the retained components (0: no cap beyond
	// width−1, so the residual space is never empty).
	MaxComponents int `json:"max_components,omitempty"`
	// Adapt lets the score calibration keep learning from readings that are
	// not anomalous (the principal axes stay as trained).
	Adapt     bool    `json:"adapt"`
	Threshold float64 `json:"threshold"`
}

// DefaultPCAConfig returns the default training settings.
func DefaultPCAConfig() PCAConfig {
	return PCAConfig{VarianceKept: 0.9, Adapt: true, Threshold: DefaultThreshold}
}

// TailState is the serialisable form of a Tail.
type TailState struct {
	Counts   []float64 `json:"counts"`
	Cap      float64   `json:"cap"`
	MinScale float64   `json:"min_scale"`
}

// State returns the serialisable form of t.
func (t *Tail) State() TailState {
	counts := make([]float64, len(t.counts))
	for i, c := range t.counts {
		counts[i] = float64(c)
	}
	return TailState{Counts: counts, Cap: t.Cap, MinScale: t.MinScale}
}

// TailFromState rebuilds a Tail.
func TailFromState(s TailState) (Tail, error) {
	if len(s.Counts) != tailBins {
		return Tail{}, fmt.Errorf("tail: %d counts, want %d", len(s.Counts), tailBins)
	}
	t := Tail{Cap: s.Cap, MinScale: s.MinScale}
	for i, c := range s.Counts {
		if !(c >= 0) || c > math.MaxFloat32 {
			return Tail{}, fmt.Errorf("tail: count %d not a finite non-negative number below %g", i, math.MaxFloat32)
		}
		t.counts[i] = float32(c)
		t.total += float64(t.counts[i])
	}
	t.refresh()
	return t, nil
}

// PCAParams are the fitted parameters of a PCA detector.
type PCAParams struct {
	Config PCAConfig `json:"config"`
	// Mean and Scale standardise each column.
	Mean  []float64 `json:"mean"`
	Scale []float64 `json:"scale"`
	// Components are the retained principal axes (k rows of width p) with
	// their Eigenvalues (variances along them).
	Components  [][]float64 `json:"components"`
	Eigenvalues []float64   `json:"eigenvalues"`
	// Minor are the remaining (residual) axes with their eigenvalues,
	// floored; the Mahalanobis distance along them weighs a break of a
	// tight relationship (small eigenvalue) by how tight it was, where SPE
	// weighs every residual direction alike and so dilutes it with noise.
	Minor            [][]float64 `json:"minor,omitempty"`
	MinorEigenvalues []float64   `json:"minor_eigenvalues,omitempty"`
	// T2, SPE and Residual calibrate the statistics on the training rows.
	T2       TailState `json:"t2"`
	SPE      TailState `json:"spe"`
	Residual TailState `json:"residual,omitempty"`
}

// Validate checks shapes and finiteness.
func (p *PCAParams) Validate() error {
	w := len(p.Mean)
	if w == 0 {
		return errors.New("pca: no columns")
	}
	if len(p.Scale) != w {
		return fmt.Errorf("pca: %d scales for %d columns", len(p.Scale), w)
	}
	if len(p.Components) == 0 || len(p.Components) != len(p.Eigenvalues) {
		return fmt.Errorf("pca: %d components, %d eigenvalues", len(p.Components), len(p.Eigenvalues))
	}
	for i, c := range p.Components {
		if len(c) != w {
			return fmt.Errorf("pca: component %d has width %d, want %d", i, len(c), w)
		}
		if !finite(c...) {
			return fmt.Errorf("pca: component %d not finite", i)
		}
	}
	if !finite(p.Mean...) || !finite(p.Scale...) || !finite(p.Eigenvalues...) || !finite(p.MinorEigenvalues...) {
		return errors.New("pca: non-finite parameter")
	}
	if len(p.Minor) != len(p.MinorEigenvalues) || len(p.Components)+len(p.Minor) > w {
		return fmt.Errorf("pca: %d minor axes, %d minor eigenvalues, %d+%d axes for %d columns", len(p.Minor), len(p.MinorEigenvalues), len(p.Components), len(p.Minor), w)
	}
	for i, c := range p.Minor {
		if len(c) != w || !finite(c...) {
			return fmt.Errorf("pca: minor axis %d has width %d or is not finite", i, len(c))
		}
		if p.MinorEigenvalues[i] <= 0 {
			return fmt.Errorf("pca: minor eigenvalue %d not positive", i)
		}
	}
	for i, s := range p.Scale {
		if s <= 0 {
			return fmt.Errorf("pca: scale %d not positive", i)
		}
	}
	for i, e := range p.Eigenvalues {
		if e <= 0 {
			return fmt.Errorf("pca: eigenvalue %d not positive", i)
		}
	}
	return nil
}

func finite(xs ...float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// PCA scores a row of an asset's sensors by Hotelling's T² (how far the row
// is along the normal directions of variation) and the squared prediction
// error SPE (how far it is off them: a broken relationship between sensors
// that each look normal alone). The two are calibrated separately and
// combined.
type PCA struct {
	p            PCAParams
	t2, spe, res Tail
	z, scores    []float64
	lastT2       float64
	lastSPE      float64
	lastRes      float64
}

// NewPCA builds a PCA detector from fitted parameters.
func NewPCA(p PCAParams) (*PCA, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	t2, err := TailFromState(p.T2)
	if err != nil {
		return nil, fmt.Errorf("pca t2: %w", err)
	}
	spe, err := TailFromState(p.SPE)
	if err != nil {
		return nil, fmt.Errorf("pca spe: %w", err)
	}
	d := &PCA{p: p, t2: t2, spe: spe, z: make([]float64, len(p.Mean)), scores: make([]float64, len(p.Components))}
	if len(p.Minor) > 0 {
		if d.res, err = TailFromState(p.Residual); err != nil {
			return nil, fmt.Errorf("pca residual: %w", err)
		}
	}
	return d, nil
}

// Params returns the detector's parameters.
func (d *PCA) Params() PCAParams { return d.p }

// Width implements RowDetector.
func (d *PCA) Width() int { return len(d.p.Mean) }

// Threshold implements RowDetector.
func (d *PCA) Threshold() float64 { return d.p.Config.Threshold }

// Stats returns T², SPE and the residual Mahalanobis distance of the
// last row.
func (d *PCA) Stats() (t2, spe, res float64) { return d.lastT2, d.lastSPE, d.lastRes }

func (d *PCA) stats(x []float64) (t2, spe, res float64) {
	for i := range d.z {
		v := 0.0
		if i < len(x) && !math.IsNaN(x[i]) && !math.IsInf(x[i], 0) {
			v = (x[i] - d.p.Mean[i]) / d.p.Scale[i]
		} // a missing value is imputed with the mean
		d.z[i] = v
	}
	for k, c := range d.p.Components {
		s := 0.0
		for i, w := range c {
			s += w * d.z[i]
		}
		d.scores[k] = s
		t2 += s * s / d.p.Eigenvalues[k]
	}
	for i := range d.z {
		r := d.z[i]
		for k, c := range d.p.Components {
			r -= c[i] * d.scores[k]
		}
		spe += r * r
	}
	for k, c := range d.p.Minor {
		s := 0.0
		for i, w := range c {
			s += w * d.z[i]
		}
		res += s * s / d.p.MinorEigenvalues[k]
	}
	return t2, spe, res
}

// UpdateRow implements RowDetector.
func (d *PCA) UpdateRow(_ int64, x []float64) float64 {
	t2, spe, res := d.stats(x)
	d.lastT2, d.lastSPE, d.lastRes = t2, spe, res
	best, m := math.Max(d.t2.Score(t2), d.spe.Score(spe)), 2
	if len(d.p.Minor) > 0 {
		best, m = math.Max(best, d.res.Score(res)), 3
	}
	s := combineMax(best, m)
	if d.p.Config.Adapt {
		w := learnWeight(s, d.p.Config.Threshold)
		d.t2.ObserveWeighted(t2, w)
		d.spe.ObserveWeighted(spe, w)
		if m == 3 {
			d.res.ObserveWeighted(res, w)
		}
	}
	return s
}

// TrainPCA fits a PCA detector to rows of normal operation (each row one
// timestamp, each column one sensor). Rows with a missing (NaN) value are
// skipped. It needs at least 2·width+10 complete rows.
func TrainPCA(rows [][]float64, cfg PCAConfig) (*PCA, error) {
	if len(rows) == 0 {
		return nil, errors.New("train pca: no rows")
	}
	w := len(rows[0])
	if w < 2 {
		return nil, fmt.Errorf("train pca: %d column(s), need at least 2", w)
	}
	if cfg.VarianceKept <= 0 || cfg.VarianceKept > 1 {
		cfg.VarianceKept = 0.9
	}
	var good [][]float64
	for i, r := range rows {
		if len(r) != w {
			return nil, fmt.Errorf("train pca: row %d has %d columns, want %d", i, len(r), w)
		}
		if finite(r...) {
			good = append(good, r)
		}
	}
	if n := len(good); n < 2*w+10 {
		return nil, fmt.Errorf("train pca: %d complete rows, need at least %d", n, 2*w+10)
	}
	n := float64(len(good))
	mean := make([]float64, w)
	scale := make([]float64, w)
	for _, r := range good {
		for i, v := range r {
			mean[i] += v
		}
	}
	for i := range mean {
		mean[i] /= n
	}
	for _, r := range good {
		for i, v := range r {
			d := v - mean[i]
			scale[i] += d * d
		}
	}
	for i := range scale {
		scale[i] = math.Sqrt(scale[i] / (n - 1))
		if !(scale[i] > scaleFloor(mean[i])) {
			scale[i] = math.Max(scaleFloor(mean[i]), 1e-9)
		}
	}
	cov := make([][]float64, w)
	for i := range cov {
		cov[i] = make([]float64, w)
	}
	z := make([]float64, w)
	for _, r := range good {
		for i, v := range r {
			z[i] = (v - mean[i]) / scale[i]
		}
		for i := 0; i < w; i++ {
			for j := i; j < w; j++ {
				cov[i][j] += z[i] * z[j]
			}
		}
	}
	for i := 0; i < w; i++ {
		for j := i; j < w; j++ {
			cov[i][j] /= n - 1
			cov[j][i] = cov[i][j]
		}
	}
	vals, vecs := symEigen(cov)
	total := 0.0
	for _, v := range vals {
		total += math.Max(v, 0)
	}
	maxK := w - 1
	if cfg.MaxComponents > 0 && cfg.MaxComponents < maxK {
		maxK = cfg.MaxComponents
	}
	k, acc := 0, 0.0
	for k < maxK && (k == 0 || acc < cfg.VarianceKept*total) {
		acc += math.Max(vals[k], 0)
		k++
	}
	p := PCAParams{Config: cfg, Mean: mean, Scale: scale}
	floor := 1e-6 * math.Max(total, 1e-12)
	for i := 0; i < k; i++ {
		p.Components = append(p.Components, vecs[i])
		p.Eigenvalues = append(p.Eigenvalues, math.Max(vals[i], floor))
	}
	// Minor axes: their eigenvalues are floored at 1e-3 of the average
	// variance so exactly collinear sensors (a duplicated channel) do not
	// make rounding noise infinitely significant.
	minorFloor := 1e-3 * math.Max(total, 1e-12) / float64(w)
	for i := k; i < w; i++ {
		p.Minor = append(p.Minor, vecs[i])
		p.MinorEigenvalues = append(p.MinorEigenvalues, math.Max(vals[i], minorFloor))
	}
	p.T2 = TailState{Counts: make([]float64, tailBins), Cap: 50000, MinScale: 0.05}
	p.SPE = TailState{Counts: make([]float64, tailBins), Cap: 50000, MinScale: 1e-6}
	p.Residual = TailState{Counts: make([]float64, tailBins), Cap: 50000, MinScale: 0.05}
	d, err := NewPCA(p)
	if err != nil {
		return nil, fmt.Errorf("train pca: %w", err)
	}
	for _, r := range good {
		t2, spe, res := d.stats(r)
		d.t2.add(t2, 1)
		d.spe.add(spe, 1)
		d.res.add(res, 1)
	}
	d.t2.refresh()
	d.spe.refresh()
	d.res.refresh()
	d.p.T2, d.p.SPE, d.p.Residual = d.t2.State(), d.spe.State(), d.res.State()
	return d, nil
}

// symEigen returns the eigenvalues (descending) and unit eigenvectors of a
// symmetric matrix by cyclic Jacobi rotations; a is overwritten.
func symEigen(a [][]float64) ([]float64, [][]float64) {
	n := len(a)
	v := make([][]float64, n)
	for i := range v {
		v[i] = make([]float64, n)
		v[i][i] = 1
	}
	for sweep := 0; sweep < 100; sweep++ {
		off := 0.0
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				off += a[i][j] * a[i][j]
			}
		}
		if off < 1e-22 {
			break
		}
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				if math.Abs(a[p][q]) < 1e-300 {
					continue
				}
				theta := (a[q][q] - a[p][p]) / (2 * a[p][q])
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				for k := 0; k < n; k++ {
					akp, akq := a[k][p], a[k][q]
					a[k][p] = c*akp - s*akq
					a[k][q] = s*akp + c*akq
				}
				for k := 0; k < n; k++ {
					apk, aqk := a[p][k], a[q][k]
					a[p][k] = c*apk - s*aqk
					a[q][k] = s*apk + c*aqk
				}
				for k := 0; k < n; k++ {
					vkp, vkq := v[k][p], v[k][q]
					v[k][p] = c*vkp - s*vkq
					v[k][q] = s*vkp + c*vkq
				}
			}
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(x, y int) bool { return a[idx[x]][idx[x]] > a[idx[y]][idx[y]] })
	vals := make([]float64, n)
	vecs := make([][]float64, n)
	for r, i := range idx {
		vals[r] = a[i][i]
		vecs[r] = make([]float64, n)
		for k := 0; k < n; k++ {
			vecs[r][k] = v[k][i]
		}
	}
	return vals, vecs
}
