package detect

import (
	"errors"
	"fmt"
	"time"

	"github.com/smartmaint/smartmaint/models"
)

// Config is the `scoring` section of the edge configuration (owned here,
// embedded by edge/internal/config). Models downloaded by the model cache
// override Detector for the sensors they name.
type Config struct {
	// Detector is the built-in detector for sensors no model names
	// (models.Builtins(); default "ensemble").
	Detector string `yaml:"detector"`
	// Events sets hysteresis and minimum duration of anomaly events.
	Events EventsConfig `yaml:"events"`
	// Assets group sensors that are scored together (rows of one asset);
	// with the ensemble, such a group also gets an online PCA fitted on
	// its first PCAWarmup rows.
	Assets []AssetConfig `yaml:"assets"`
}

// EventsConfig is EventConfig in configuration form.
type EventsConfig struct {
	MinReadings    int           `yaml:"min_readings"`
	MinDuration    time.Duration `yaml:"min_duration"`
	ImmediateScore float64       `yaml:"immediate_score"`
	ClearRatio     float64       `yaml:"clear_ratio"`
	ClearReadings  int           `yaml:"clear_readings"`
	ClearDuration  time.Duration `yaml:"clear_duration"`
}

// AssetConfig names one asset's sensors.
type AssetConfig struct {
	Name      string   `yaml:"name"`
	Sensors   []string `yaml:"sensors"`
	PCAWarmup int      `yaml:"pca_warmup"`
}

// DefaultConfig returns the defaults: the ensemble, DefaultEventConfig, no
// asset groups.
func DefaultConfig() Config {
	e := DefaultEventConfig()
	return Config{
		Detector: models.NameEnsemble,
		Events: EventsConfig{
			MinReadings: e.MinReadings, MinDuration: time.Duration(e.MinDuration),
			ImmediateScore: e.Immediate, ClearRatio: e.ClearRatio,
			ClearReadings: e.ClearReadings, ClearDuration: time.Duration(e.ClearDuration),
		},
	}
}

// Validate reports every problem, with its field path under prefix (e.g.
// "scoring").
func (c Config) Validate(prefix string) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, field, fmt.Sprintf(format, a...)))
	}
	if _, err := models.New(c.Detector); err != nil {
		bad("detector", "%v", err)
	}
	e := c.Events
	if e.MinReadings < 1 {
		bad("events.min_readings", "must be ≥ 1")
	}
	if e.ClearReadings < 1 {
		bad("events.clear_readings", "must be ≥ 1")
	}
	if e.MinDuration < 0 || e.ClearDuration < 0 {
		bad("events", "durations must be ≥ 0")
	}
	if e.ImmediateScore < 0 || e.ImmediateScore > 1 {
		bad("events.immediate_score", "must be in [0,1] (0 disables)")
	}
	if !(e.ClearRatio > 0 && e.ClearRatio <= 1) {
		bad("events.clear_ratio", "must be in (0,1]")
	}
	seen := map[string]string{}
	for i, a := range c.Assets {
		f := fmt.Sprintf("assets[%d]", i)
		if a.Name == "" {
			bad(f+".name", "missing")
		}
		if len(a.Sensors) < 2 {
			bad(f+".sensors", "an asset group needs at least two sensors")
		}
		for _, s := range a.Sensors {
			if prev, dup := seen[s]; dup {
				bad(f+".sensors", "sensor %q is already in asset %q", s, prev)
			}
			seen[s] = a.Name
		}
		if a.PCAWarmup < 0 {
			bad(f+".pca_warmup", "must be ≥ 0")
		}
	}
	return errors.Join(errs...)
}

// EventConfig converts the configuration form.
func (c Config) EventConfig() EventConfig {
	e := c.Events
	return EventConfig{
		MinReadings: e.MinReadings, MinDuration: int64(e.MinDuration), Immediate: e.ImmediateScore,
		ClearRatio: e.ClearRatio, ClearReadings: e.ClearReadings, ClearDuration: int64(e.ClearDuration),
	}
}

// ModelSet builds the built-in model set the configuration describes.
func (c Config) ModelSet() (*ModelSet, error) {
	set, err := Builtin(c.Detector)
	if err != nil {
		return nil, err
	}
	for _, a := range c.Assets {
		g := AssetGroup{Name: a.Name, Sensors: a.Sensors, Ref: set.Default.Ref}
		if c.Detector == models.NameEnsemble {
			w, warm := len(a.Sensors), a.PCAWarmup
			if warm == 0 {
				warm = 1440 // a day at one reading a minute
			}
			g.Row = func() models.RowDetector { return models.NewOnlinePCA(w, warm, models.DefaultPCAConfig()) }
		}
		set.Assets = append(set.Assets, g)
	}
	if err := set.index(); err != nil {
		return nil, err
	}
	return set, nil
}
