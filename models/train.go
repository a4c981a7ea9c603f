package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/smartmaint/smartmaint/models/artifact"
)

// TrainOptions describe a training run.
type TrainOptions struct {
	// Kind is the detector kind to fit (NamePCA or a univariate built-in).
	Kind    string
	Name    string
	Version string
	// Sensors are the column names, in order.
	Sensors    []string
	SensorType string
	// Times of the rows (Unix ns), for the training window; may be nil.
	Times []int64
	// Source describes where the rows came from.
	Source string
	// Now stamps CreatedAt (passed in: no hidden clock).
	Now time.Time
}

// Train fits a detector of opts.Kind to rows of normal operation (rows ×
// sensors; NaN = missing) and returns the unsigned model payload, ready for
// artifact.Encode. For PCA it fits the axes and calibration; for the
// univariate kinds, which learn each sensor online, it records their
// configuration. In both cases it replays the rows through the fitted
// detector and reports the share of readings it would have flagged
// (metric "train_alarm_rate"), which should be near 0 on normal data.
func Train(rows [][]float64, opts TrainOptions) (*artifact.Model, error) {
	if len(rows) == 0 {
		return nil, errors.New("train: no rows")
	}
	w := len(rows[0])
	if len(opts.Sensors) != 0 && len(opts.Sensors) != w {
		return nil, fmt.Errorf("train: %d sensor names for %d columns", len(opts.Sensors), w)
	}
	m := &artifact.Model{
		Name: opts.Name, Version: opts.Version, Kind: opts.Kind,
		Sensors: opts.Sensors, SensorType: opts.SensorType,
		Calibration: artifact.Calibration{Method: "tail-log10", Decades: Decades},
		Training:    artifact.Training{Rows: len(rows), Source: opts.Source, Metrics: map[string]float64{}},
		CreatedAt:   opts.Now.UTC(),
	}
	if n := len(opts.Times); n > 0 {
		m.Training.From = time.Unix(0, opts.Times[0]).UTC()
		m.Training.To = time.Unix(0, opts.Times[n-1]).UTC()
	}
	var params any
	var asset *Asset
	switch opts.Kind {
	case NamePCA:
		p, err := TrainPCA(rows, DefaultPCAConfig())
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		params = p.Params()
		m.Threshold = p.Threshold()
		m.Training.Metrics["components"] = float64(len(p.Params().Components))
		replay, _ := NewPCA(p.Params())
		asset = NewAsset(nil, replay, m.Threshold)
	default:
		cfg, err := defaultConfig(opts.Kind)
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		params = cfg
		ds := make([]Detector, w)
		for i := range ds {
			ds[i], _ = New(opts.Kind)
		}
		m.Threshold = ds[0].Threshold()
		asset = NewAsset(ds, nil, m.Threshold)
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	m.Params = raw
	alarms, scored := 0, 0
	for i, r := range rows {
		var t int64
		if i < len(opts.Times) {
			t = opts.Times[i]
		}
		if asset.Update(t, r) >= m.Threshold {
			alarms++
		}
		scored++
	}
	m.Training.Metrics["train_alarm_rate"] = float64(alarms) / float64(scored)
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return m, nil
}

func defaultConfig(kind string) (any, error) {
	switch kind {
	case NameEnsemble:
		return DefaultEnsembleConfig(), nil
	case NameEWMA:
		return DefaultEWMAConfig(), nil
	case NameMAD, NameSpike:
		return DefaultMADConfig(), nil
	case NameSpread:
		return DefaultSpreadConfig(), nil
	case NameCUSUM:
		return DefaultCUSUMConfig(), nil
	case NameStuck:
		return DefaultStuckConfig(), nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// Built is a model ready to score: constructors for fresh per-sensor or
// per-asset state. Constructors allocate; scoring with what they return
// does not.
type Built struct {
	// Ref is "name@version".
	Ref       string
	Kind      string
	Sensors   []string
	Threshold float64
	// NewSensor returns a univariate detector (nil for row kinds).
	NewSensor func() Detector
	// NewRow returns a row detector over Sensors (nil for univariate kinds).
	NewRow func() RowDetector
}

func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func checkThreshold(t float64) error {
	if !(t > 0 && t <= 1) {
		return fmt.Errorf("threshold %v not in (0,1]", t)
	}
	return nil
}

// FromArtifact validates a (verified) model payload's kind-specific
// parameters and returns constructors for it.
func FromArtifact(m *artifact.Model) (*Built, error) {
	b := &Built{Ref: m.Ref(), Kind: m.Kind, Sensors: m.Sensors, Threshold: m.Threshold}
	fail := func(err error) (*Built, error) {
		return nil, fmt.Errorf("model %s: %s params: %w", m.Ref(), m.Kind, err)
	}
	switch m.Kind {
	case NamePCA:
		var p PCAParams
		if err := strictJSON(m.Params, &p); err != nil {
			return fail(err)
		}
		p.Config.Threshold = m.Threshold
		if _, err := NewPCA(p); err != nil {
			return fail(err)
		}
		if len(m.Sensors) != 0 && len(m.Sensors) != len(p.Mean) {
			return fail(fmt.Errorf("%d sensors for %d columns", len(m.Sensors), len(p.Mean)))
		}
		b.NewRow = func() RowDetector { d, _ := NewPCA(p); return d }
	case NameEnsemble:
		var c EnsembleConfig
		if err := strictJSON(m.Params, &c); err != nil {
			return fail(err)
		}
		c.Threshold = m.Threshold
		if err := ValidateEnsemble(c); err != nil {
			return fail(err)
		}
		b.NewSensor = func() Detector { return NewEnsemble(c) }
	case NameEWMA:
		var c EWMAConfig
		if err := strictJSON(m.Params, &c); err != nil {
			return fail(err)
		}
		c.Threshold = m.Threshold
		if !(c.Alpha > 0 && c.Alpha < 1) || c.Absorb < 0 || c.Absorb > 1 || c.Warmup < 0 {
			return fail(errors.New("alpha must be in (0,1), absorb in [0,1], warmup ≥ 0"))
		}
		b.NewSensor = func() Detector { return NewEWMA(c) }
	case NameMAD, NameSpike:
		var c MADConfig
		if err := strictJSON(m.Params, &c); err != nil {
			return fail(err)
		}
		c.Threshold = m.Threshold
		if c.Window < 8 || c.Window > 1<<16 || !(c.Clip > 0) {
			return fail(errors.New("window must be in [8, 65536], clip > 0"))
		}
		if m.Kind == NameSpike {
			b.NewSensor = func() Detector { return NewDiff(NewMAD(c)) }
		} else {
			b.NewSensor = func() Detector { return NewMAD(c) }
		}
	case NameSpread:
		var c SpreadConfig
		if err := strictJSON(m.Params, &c); err != nil {
			return fail(err)
		}
		c.Threshold = m.Threshold
		if !(c.Fast > 0 && c.Fast < 1 && c.Slow > 0 && c.Slow < 1) {
			return fail(errors.New("fast and slow must be in (0,1)"))
		}
		b.NewSensor = func() Detector { return NewSpread(c) }
	case NameCUSUM:
		var c CUSUMConfig
		if err := strictJSON(m.Params, &c); err != nil {
			return fail(err)
		}
		c.Threshold = m.Threshold
		if !(c.Alpha > 0 && c.Alpha < 1) || !(c.K >= 0) || !(c.Clip > 0) || math.IsInf(c.K, 0) {
			return fail(errors.New("alpha must be in (0,1), k ≥ 0, clip > 0"))
		}
		b.NewSensor = func() Detector { return NewCUSUM(c) }
	case NameStuck:
		var c StuckConfig
		if err := strictJSON(m.Params, &c); err != nil {
			return fail(err)
		}
		c.Threshold = m.Threshold
		if c.MinRun < 1 || !(c.Eps >= 0) {
			return fail(errors.New("min_run ≥ 1, eps ≥ 0"))
		}
		b.NewSensor = func() Detector { return NewStuck(c) }
	default:
		return nil, fmt.Errorf("model %s: unknown kind %q", m.Ref(), m.Kind)
	}
	if err := checkThreshold(m.Threshold); err != nil {
		return fail(err)
	}
	return b, nil
}
