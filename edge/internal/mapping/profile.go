package mapping

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"sort"
	"strings"

	"github.com/smartmaint/smartmaint/edge/internal/config/strictyaml"
)

// Profile describes a kind of sensor: what it measures, in which unit,
// its physical range, its alarm limits and the detector that scores it by
// default. Profiles live in firmware-configs/profiles/*.yaml (one per
// file); a sensor's profile may be adjusted by a SensorOverride. A
// *Profile handed out by the Mapper is shared and must not be modified.
type Profile struct {
	// Version of the profile file format; must be 1.
	Version int `yaml:"version"`
	// Name is the key that subscriptions and overrides refer to.
	Name string `yaml:"name"`
	// Type is the measured quantity, e.g. "vibration_velocity", "temperature".
	Type string `yaml:"type"`
	// Description is for people.
	Description string `yaml:"description,omitempty"`
	// Unit of the values, e.g. "mm/s", "degC", "bar".
	Unit string `yaml:"unit"`
	// Range is the physical measuring range of the transmitter.
	Range Range `yaml:"range"`
	// Limits are the alarm limits with their deadband.
	Limits Limits `yaml:"limits"`
	// Detector names the models/ detector used when no trained model exists.
	Detector string `yaml:"detector"`
}

// Range is a closed interval of physically possible values.
type Range struct {
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
}

// Limits are alarm limits: HH and LL are alarms, H and L warnings. Any may
// be absent. Deadband is the hysteresis a value must move back past a
// limit before the condition clears (in the profile's unit, ≥ 0).
type Limits struct {
	HH       *float64 `yaml:"hh,omitempty"`
	H        *float64 `yaml:"h,omitempty"`
	L        *float64 `yaml:"l,omitempty"`
	LL       *float64 `yaml:"ll,omitempty"`
	Deadband *float64 `yaml:"deadband,omitempty"`
}

// SensorOverride adjusts one sensor's profile in the site config. Set
// fields replace the profile's; absent fields keep it.
type SensorOverride struct {
	// Profile replaces the profile chosen by the subscription's rules.
	Profile  string  `yaml:"profile,omitempty"`
	Unit     string  `yaml:"unit,omitempty"`
	Range    *Range  `yaml:"range,omitempty"`
	Limits   *Limits `yaml:"limits,omitempty"`
	Detector string  `yaml:"detector,omitempty"`
}

// ProfilesConfig says where profiles come from: the built-in set
// (firmware-configs/profiles, compiled in) and any extra directories. A
// profile in a directory replaces a built-in one of the same name.
type ProfilesConfig struct {
	// Builtin enables the compiled-in profiles (default true).
	Builtin *bool `yaml:"builtin,omitempty"`
	// Dirs are directories of *.yaml profile files, read in order.
	Dirs []string `yaml:"dirs,omitempty"`
}

// UseBuiltin reports whether the built-in profiles are enabled.
func (c ProfilesConfig) UseBuiltin() bool { return c.Builtin == nil || *c.Builtin }

// Validate checks the profile for consistency; errors are "path: message".
func (p *Profile) Validate() error {
	var errs []error
	add := func(path, f string, a ...any) { errs = append(errs, strictyaml.Errorf(path, f, a...)) }
	if p.Version != 1 {
		add("version", "must be 1 (got %d)", p.Version)
	}
	if !validName(p.Name) {
		add("name", "must be a non-empty name of a-z, 0-9 and _ (got %q)", p.Name)
	}
	if strings.TrimSpace(p.Type) == "" {
		add("type", "required")
	}
	if strings.TrimSpace(p.Unit) == "" {
		add("unit", "required")
	}
	if strings.TrimSpace(p.Detector) == "" {
		add("detector", "required (the default detector for this kind of sensor)")
	}
	errs = append(errs, p.Range.validate("range"), p.Limits.validate("limits", p.Range))
	return errors.Join(errs...)
}

func finite(f *float64) bool { return f == nil || !math.IsNaN(*f) && !math.IsInf(*f, 0) }

func (r Range) validate(at string) error {
	var errs []error
	if r.Min == nil {
		errs = append(errs, strictyaml.Errorf(at+".min", "required"))
	}
	if r.Max == nil {
		errs = append(errs, strictyaml.Errorf(at+".max", "required"))
	}
	if !finite(r.Min) || !finite(r.Max) {
		errs = append(errs, strictyaml.Errorf(at, "min and max must be finite"))
	} else if r.Min != nil && r.Max != nil && *r.Min >= *r.Max {
		errs = append(errs, strictyaml.Errorf(at, "min (%g) must be below max (%g)", *r.Min, *r.Max))
	}
	return errors.Join(errs...)
}

func (l Limits) validate(at string, r Range) error {
	var errs []error
	type lim struct {
		name string
		v    *float64
	}
	// Ordered from lowest to highest: LL < L < H < HH.
	order := []lim{{"ll", l.LL}, {"l", l.L}, {"h", l.H}, {"hh", l.HH}}
	var prev *lim
	for i := range order {
		cur := &order[i]
		if cur.v == nil {
			continue
		}
		if !finite(cur.v) {
			errs = append(errs, strictyaml.Errorf(at+"."+cur.name, "must be finite"))
			continue
		}
		if r.Min != nil && r.Max != nil && *r.Min < *r.Max && (*cur.v < *r.Min || *cur.v > *r.Max) {
			errs = append(errs, strictyaml.Errorf(at+"."+cur.name, "%g is outside the range [%g, %g]", *cur.v, *r.Min, *r.Max))
		}
		if prev != nil && *prev.v >= *cur.v {
			errs = append(errs, strictyaml.Errorf(at+"."+cur.name, "%g must be above %s (%g); limits are ordered ll < l < h < hh", *cur.v, prev.name, *prev.v))
		}
		prev = cur
	}
	if l.Deadband != nil {
		switch {
		case !finite(l.Deadband) || *l.Deadband < 0:
			errs = append(errs, strictyaml.Errorf(at+".deadband", "must be a finite number ≥ 0"))
		case r.Min != nil && r.Max != nil && *l.Deadband >= *r.Max-*r.Min:
			errs = append(errs, strictyaml.Errorf(at+".deadband", "%g is not smaller than the whole range", *l.Deadband))
		}
	}
	return errors.Join(errs...)
}

// apply returns a copy of p with the override's fields set.
func (o SensorOverride) apply(p *Profile) *Profile {
	q := *p
	if o.Unit != "" {
		q.Unit = o.Unit
	}
	if o.Detector != "" {
		q.Detector = o.Detector
	}
	if o.Range != nil {
		if o.Range.Min != nil {
			q.Range.Min = o.Range.Min
		}
		if o.Range.Max != nil {
			q.Range.Max = o.Range.Max
		}
	}
	if o.Limits != nil {
		set := func(dst **float64, v *float64) {
			if v != nil {
				*dst = v
			}
		}
		set(&q.Limits.HH, o.Limits.HH)
		set(&q.Limits.H, o.Limits.H)
		set(&q.Limits.L, o.Limits.L)
		set(&q.Limits.LL, o.Limits.LL)
		set(&q.Limits.Deadband, o.Limits.Deadband)
	}
	return &q
}

// Profiles is a set of profiles by name.
type Profiles map[string]*Profile

// Names returns the profile names, sorted.
func (ps Profiles) Names() []string {
	names := make([]string, 0, len(ps))
	for n := range ps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LoadProfiles reads every *.yaml and *.yml file in dir of fsys into ps
// (replacing profiles of the same name). It returns the problems of every
// bad file; good files are loaded even when others are bad. label is used
// as the file name prefix in problems (e.g. the directory on disk).
func LoadProfiles(ps Profiles, fsys fs.FS, dir, label string) strictyaml.Problems {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return strictyaml.Problems{{File: label, Msg: fmt.Sprintf("cannot read profile directory: %v", err)}}
	}
	var probs strictyaml.Problems
	byName := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		file := path.Join(label, e.Name())
		data, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			probs = append(probs, strictyaml.Problem{File: file, Msg: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		p, ps2 := ParseProfile(file, data)
		probs = append(probs, ps2...)
		if p == nil {
			continue
		}
		if other, dup := byName[p.Name]; dup {
			probs = append(probs, strictyaml.Problem{File: file, Path: "name", Msg: fmt.Sprintf("profile %q is also defined in %s", p.Name, other)})
			continue
		}
		byName[p.Name] = file
		ps[p.Name] = p
	}
	return probs
}

// ParseProfile decodes and validates one profile file. It returns nil and
// the problems when the file is not a valid profile.
func ParseProfile(file string, data []byte) (*Profile, strictyaml.Problems) {
	var p Profile
	root, probs := strictyaml.Decode(file, data, &p)
	if root == nil || len(probs) > 0 {
		return nil, probs
	}
	if probs := strictyaml.FromError(file, root, "", p.Validate()); len(probs) > 0 {
		return nil, probs
	}
	return &p, nil
}
