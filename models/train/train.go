// Package train fits detectors to history and produces model artifacts
// (models/artifact) for sm-collector's `models train` and `models publish`.
// It is training code: sm-edge never links it (shared/conventions checks
// that); the edge only loads artifacts with models.FromArtifact.
package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
)

// Options describe a training run.
type Options struct {
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

// Fit fits a detector of opts.Kind to rows of normal operation (rows ×
// sensors; NaN = missing) and returns the unsigned model payload, ready for
// artifact.Encode. For PCA it fits the axes and calibration; for the
// univariate kinds, which learn each sensor online, it records their
// configuration. In both cases it replays the rows through the fitted
// detector and reports the share of readings it would have flagged
// (metric "train_alarm_rate"), which should be near 0 on normal data.
func Fit(rows [][]float64, opts Options) (*artifact.Model, error) {
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
		Calibration: artifact.Calibration{Method: "tail-log10", Decades: models.Decades},
		Training:    artifact.Training{Rows: len(rows), Source: opts.Source, Metrics: map[string]float64{}},
		CreatedAt:   opts.Now.UTC(),
	}
	if n := len(opts.Times); n > 0 {
		m.Training.From = time.Unix(0, opts.Times[0]).UTC()
		m.Training.To = time.Unix(0, opts.Times[n-1]).UTC()
	}
	var params any
	var asset *models.Asset
	switch opts.Kind {
	case models.NamePCA:
		p, err := models.TrainPCA(rows, models.DefaultPCAConfig())
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		params = p.Params()
		m.Threshold = p.Threshold()
		m.Training.Metrics["components"] = float64(len(p.Params().Components))
		replay, _ := models.NewPCA(p.Params())
		asset = models.NewAsset(nil, replay, m.Threshold)
	default:
		cfg, err := models.DefaultConfig(opts.Kind)
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		params = cfg
		ds := make([]models.Detector, w)
		for i := range ds {
			ds[i], _ = models.New(opts.Kind)
		}
		m.Threshold = ds[0].Threshold()
		asset = models.NewAsset(ds, nil, m.Threshold)
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
