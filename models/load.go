package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/smartmaint/smartmaint/models/artifact"
)

// DefaultConfig returns the default parameters of a univariate kind, as
// stored in an artifact's params.
func DefaultConfig(kind string) (any, error) {
	switch kind {
	case NameEnsemble:
		return DefaultEnsembleConfig(), nil
	case NameEWMA:
		return DefaultEWMAConfig(), nil
	case NameMAD:
		c := DefaultMADConfig()
		c.MinTail = levelMinTail
		return c, nil
	case NameSpike:
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
	Ref     string
	Kind    string
	Sensors []string
	// SensorType is the sensor type the model applies to, when it names
	// no sensors.
	SensorType string
	Threshold  float64
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
	b := &Built{Ref: m.Ref(), Kind: m.Kind, Sensors: m.Sensors, SensorType: m.SensorType, Threshold: m.Threshold}
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
		if c.Window < 8 || c.Window > 1<<16 || !(c.Clip > 0) || c.Warmup < 0 || c.MinTail < 0 {
			return fail(errors.New("window must be in [8, 65536], clip > 0, warmup ≥ 0, min_tail ≥ 0"))
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
