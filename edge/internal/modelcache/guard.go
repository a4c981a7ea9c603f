package modelcache

import (
	"errors"
	"fmt"
	"time"
)

// GuardPolicy decides whether a newly activated model behaves plausibly.
// A model trained on the wrong data, or with a broken calibration, flags
// a large share of perfectly normal readings right away; real faults are
// rare, so a high flag share in the first minutes means the model, not
// the plant, is wrong.
type GuardPolicy struct {
	// Window is how long after activation the model is watched.
	Window time.Duration `yaml:"window"`
	// MinReadings is how many readings must be scored before the guard
	// may roll back; fewer give too noisy a share.
	MinReadings int `yaml:"min_readings"`
	// MaxFlagShare is the largest plausible share of flagged readings
	// (0 < share < 1).
	MaxFlagShare float64 `yaml:"max_flag_share"`
}

// DefaultGuardPolicy watches the first 10 minutes, needs at least 200
// readings, and rolls back above 20 % flagged: ten times the flag rate
// a tuned detector shows even on a plant with an active fault.
func DefaultGuardPolicy() GuardPolicy {
	return GuardPolicy{Window: 10 * time.Minute, MinReadings: 200, MaxFlagShare: 0.2}
}

// Validate reports bad values (field names relative to the policy).
func (p GuardPolicy) Validate() error {
	var errs []error
	if p.Window <= 0 {
		errs = append(errs, fmt.Errorf("window: %s, want > 0", p.Window))
	}
	if p.MinReadings < 1 {
		errs = append(errs, fmt.Errorf("min_readings: %d, want >= 1", p.MinReadings))
	}
	if !(p.MaxFlagShare > 0 && p.MaxFlagShare < 1) {
		errs = append(errs, fmt.Errorf("max_flag_share: %v, want between 0 and 1", p.MaxFlagShare))
	}
	return errors.Join(errs...)
}

// Decision is the guard's verdict.
type Decision int

// Decisions.
const (
	// Watching: still inside the window, no verdict yet.
	Watching Decision = iota
	// Keep: the window passed with a plausible flag share; stop watching.
	Keep
	// Rollback: the model flagged an implausible share; roll it back.
	Rollback
)

func (d Decision) String() string {
	switch d {
	case Watching:
		return "watching"
	case Keep:
		return "keep"
	case Rollback:
		return "rollback"
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// Guard watches one newly activated model. The detect stage feeds it
// counts (scored readings and how many the model flagged) and acts on
// the decision: on Rollback it calls Cache.Reject for the model. A Guard
// is not safe for concurrent use; keep one per active model in the
// goroutine that scores with it.
type Guard struct {
	p       GuardPolicy
	start   time.Time
	total   int64
	flagged int64
	final   Decision
}

// NewGuard starts watching now (time.Now, so tests can use synctest).
func NewGuard(p GuardPolicy) *Guard {
	return &Guard{p: p, start: time.Now()}
}

// Observe adds scored readings and flagged ones and returns the verdict.
// Once Keep or Rollback has been returned, the same verdict is returned
// forever.
func (g *Guard) Observe(scored, flagged int) Decision {
	if g.final != Watching {
		return g.final
	}
	g.total += int64(scored)
	g.flagged += int64(flagged)
	if g.total >= int64(g.p.MinReadings) && g.Share() > g.p.MaxFlagShare {
		g.final = Rollback
		return g.final
	}
	if time.Since(g.start) >= g.p.Window {
		// Too few readings in the window to judge: keep the model rather
		// than roll back on noise; the operator sees it in the metrics.
		g.final = Keep
	}
	return g.final
}

// Share is the flagged share so far (0 with no readings).
func (g *Guard) Share() float64 {
	if g.total == 0 {
		return 0
	}
	return float64(g.flagged) / float64(g.total)
}

// Reason describes the verdict for logs and reports.
func (g *Guard) Reason() string {
	return fmt.Sprintf("flagged %d of %d readings (%.1f %%, limit %.1f %%) in %s since activation",
		g.flagged, g.total, 100*g.Share(), 100*g.p.MaxFlagShare, time.Since(g.start).Round(time.Second))
}
