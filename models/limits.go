package models

import (
	"errors"
	"fmt"
	"math"
)

// Level is an alarm level of a sensor's limits.
type Level uint8

// Alarm levels, from inside the limits outwards.
const (
	LevelNone Level = iota
	LevelH
	LevelHH
	LevelL
	LevelLL
)

// String returns "", "H", "HH", "L" or "LL".
func (l Level) String() string {
	switch l {
	case LevelH:
		return "H"
	case LevelHH:
		return "HH"
	case LevelL:
		return "L"
	case LevelLL:
		return "LL"
	}
	return ""
}

// rank orders levels by severity within their direction.
func (l Level) rank() int {
	switch l {
	case LevelH, LevelL:
		return 1
	case LevelHH, LevelLL:
		return 2
	}
	return 0
}

// LimitsConfig holds a sensor's alarm limits from its profile. A nil limit
// is not set.
type LimitsConfig struct {
	HH *float64 `json:"hh,omitempty" yaml:"hh,omitempty"`
	H  *float64 `json:"h,omitempty" yaml:"h,omitempty"`
	L  *float64 `json:"l,omitempty" yaml:"l,omitempty"`
	LL *float64 `json:"ll,omitempty" yaml:"ll,omitempty"`
	// Deadband is how far back inside a limit a value must return before
	// the alarm clears, so a value hovering at the limit does not flap.
	Deadband float64 `json:"deadband,omitempty" yaml:"deadband,omitempty"`
	// MinDuration (ns) is how long a value must stay beyond a limit before
	// the alarm is raised, so a single glitch does not raise it.
	MinDuration int64 `json:"min_duration_ns,omitempty" yaml:"min_duration_ns,omitempty"`
}

// Empty reports whether no limit is set.
func (c LimitsConfig) Empty() bool { return c.HH == nil && c.H == nil && c.L == nil && c.LL == nil }

// Validate reports inconsistent limits (LL ≤ L < H ≤ HH, finite, deadband ≥ 0).
func (c LimitsConfig) Validate() error {
	var errs []error
	vals := []struct {
		name string
		v    *float64
	}{{"ll", c.LL}, {"l", c.L}, {"h", c.H}, {"hh", c.HH}}
	prev, prevName := math.Inf(-1), ""
	for _, x := range vals {
		if x.v == nil {
			continue
		}
		if math.IsNaN(*x.v) || math.IsInf(*x.v, 0) {
			errs = append(errs, fmt.Errorf("limit %s: not finite", x.name))
			continue
		}
		if *x.v < prev {
			errs = append(errs, fmt.Errorf("limit %s (%g) below %s (%g)", x.name, *x.v, prevName, prev))
		}
		prev, prevName = *x.v, x.name
	}
	if c.Deadband < 0 || math.IsNaN(c.Deadband) {
		errs = append(errs, errors.New("deadband: must be ≥ 0"))
	}
	if c.MinDuration < 0 {
		errs = append(errs, errors.New("min_duration: must be ≥ 0"))
	}
	return errors.Join(errs...)
}

// Limits is the limit-alarm detector: HH/H/L/LL with deadband and minimum
// duration. Its score is 1 while an HH or LL alarm is active, 0.75 for H or
// L, 0 otherwise; its threshold is 0.5.
type Limits struct {
	cfg          LimitsConfig
	hh, h, l, ll float64 // ±Inf when unset
	active       Level
	pending      Level
	pendingSince int64
}

// NewLimits returns a limits detector.
func NewLimits(cfg LimitsConfig) *Limits {
	get := func(p *float64, def float64) float64 {
		if p == nil {
			return def
		}
		return *p
	}
	return &Limits{
		cfg: cfg,
		hh:  get(cfg.HH, math.Inf(1)), h: get(cfg.H, math.Inf(1)),
		l: get(cfg.L, math.Inf(-1)), ll: get(cfg.LL, math.Inf(-1)),
	}
}

// Threshold implements Detector.
func (d *Limits) Threshold() float64 { return 0.5 }

// Active returns the alarm level in force after the last Update.
func (d *Limits) Active() Level { return d.active }

// LimitOf returns the limit value of level lv (NaN for LevelNone).
func (d *Limits) LimitOf(lv Level) float64 {
	switch lv {
	case LevelH:
		return d.h
	case LevelHH:
		return d.hh
	case LevelL:
		return d.l
	case LevelLL:
		return d.ll
	}
	return math.NaN()
}

// raw returns the level of v against the limits moved inward by db.
func (d *Limits) raw(v, db float64) Level {
	switch {
	case v >= d.hh-db:
		return LevelHH
	case v >= d.h-db:
		return LevelH
	case v <= d.ll+db:
		return LevelLL
	case v <= d.l+db:
		return LevelL
	}
	return LevelNone
}

// Update implements Detector.
func (d *Limits) Update(t int64, v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return d.score()
	}
	r := d.raw(v, 0)
	// Clearing or downgrading uses the deadband: the active level holds
	// while the value is within Deadband inside its limit.
	if d.active != LevelNone && (r.rank() < d.active.rank() || (r != LevelNone && !sameSide(r, d.active))) {
		keep := d.raw(v, d.cfg.Deadband)
		if !(sameSide(keep, d.active) && keep.rank() >= d.active.rank()) {
			if sameSide(keep, d.active) && keep.rank() > 0 {
				d.active = keep
			} else {
				d.active = LevelNone
			}
		}
	}
	if r.rank() > 0 && (d.active == LevelNone || !sameSide(r, d.active) || r.rank() > d.active.rank()) {
		if d.pending != r {
			d.pending, d.pendingSince = r, t
		}
		if t-d.pendingSince >= d.cfg.MinDuration {
			d.active, d.pending = r, LevelNone
		}
	} else if d.pending != LevelNone && !(sameSide(r, d.pending) && r.rank() >= d.pending.rank()) {
		d.pending = LevelNone
	}
	return d.score()
}

func sameSide(a, b Level) bool {
	hi := func(x Level) bool { return x == LevelH || x == LevelHH }
	lo := func(x Level) bool { return x == LevelL || x == LevelLL }
	return (hi(a) && hi(b)) || (lo(a) && lo(b))
}

func (d *Limits) score() float64 {
	switch d.active.rank() {
	case 2:
		return 1
	case 1:
		return 0.75
	}
	return 0
}
