package detect

import (
	"fmt"

	"github.com/smartmaint/smartmaint/models"
)

// BuildSet assembles a ModelSet from loaded models (models.FromArtifact),
// as the model cache does after a download:
//   - a univariate model naming sensors scores those sensors;
//   - a univariate model naming no sensors becomes the default for every
//     other sensor (at most one);
//   - a row model (PCA) scores its sensors together, as one asset named
//     after the model;
//   - sensors no model names get the built-in default ensemble.
//
// Univariate models without a sensor list that are promoted to a target (a
// sensor glob, a sensor type, the whole edge) are resolved per sensor by
// the caller through ModelSet.Match (edge/internal/agent does this with the
// model cache's targets); given here, a model selected by sensor type is
// refused rather than ignored, since BuildSet knows no sensor types.
func BuildSet(loaded []*models.Built) (*ModelSet, error) {
	set, err := Builtin(models.NameEnsemble)
	if err != nil {
		return nil, err
	}
	set.BySensor = map[string]*models.Built{}
	haveDefault := false
	for _, b := range loaded {
		if b.SensorType != "" && len(b.Sensors) == 0 {
			return nil, fmt.Errorf("model %s: selection by sensor type (%q) is not supported yet; list its sensors", b.Ref, b.SensorType)
		}
		switch {
		case b.NewRow != nil:
			if len(b.Sensors) < 2 {
				return nil, fmt.Errorf("model %s: a row model needs its sensors listed", b.Ref)
			}
			set.Assets = append(set.Assets, AssetGroup{Name: b.Ref, Sensors: b.Sensors, Row: b.NewRow, Ref: b.Ref, RowOnly: true})
		case b.NewSensor == nil:
			return nil, fmt.Errorf("model %s: nothing to score with", b.Ref)
		case len(b.Sensors) == 0:
			if haveDefault {
				return nil, fmt.Errorf("model %s: a second model for all sensors (the first is %s)", b.Ref, set.Default.Ref)
			}
			set.Default, haveDefault = b, true
		default:
			for _, s := range b.Sensors {
				if prev, dup := set.BySensor[s]; dup {
					return nil, fmt.Errorf("model %s: sensor %q is already scored by %s", b.Ref, s, prev.Ref)
				}
				set.BySensor[s] = b
			}
		}
	}
	if err := set.index(); err != nil {
		return nil, err
	}
	return set, nil
}
