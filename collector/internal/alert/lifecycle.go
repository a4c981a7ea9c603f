// Package alert turns edge events into alerts and manages their lifecycle:
// an event opens an alert or updates the open one for the same sensor and
// rule; severities critical, major, minor, warning; states open →
// acknowledged → resolved, with auto-resolve once the condition has been
// clear for a configured time and escalation when an alert stays
// unacknowledged; an audit trail of every transition (alert_events); and a
// time-to-limit forecast from the sensor's recent readings.
//
// Events are processed inside the ingest transaction of the batch that
// carried them (Processor.ProcessEvents is a store.EventsHook), so an
// alert, its audit row and its notifications (through the Notifier, a
// transactional outbox) commit together with the batch or not at all.
// Events whose processing failed stay unprocessed and are retried by the
// sweeper (Processor.Sweep) through the same code, until they succeed or
// are given up after Config.EventMaxAttempts.
//
// The timing rules are pure (Policy, Apply, Due) and tested with
// testing/synctest; the database code only loads, applies and stores.
// See README.md.
package alert

import (
	"errors"
	"fmt"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Sentinel errors.
var (
	// ErrNotFound: no alert with that id.
	ErrNotFound = errors.New("alert not found")
	// ErrState: the transition is not allowed from the alert's state (for
	// example acknowledging a resolved alert).
	ErrState = errors.New("transition not allowed in this state")
	// ErrInvalid: an argument is malformed (the text says which).
	ErrInvalid = errors.New("invalid argument")
)

// State is an alert's place in its lifecycle.
type State string

// States. An alert is active until resolved.
const (
	StateOpen         State = "open"
	StateAcknowledged State = "acknowledged"
	StateResolved     State = "resolved"
)

// Transition names a change recorded in the audit trail.
type Transition string

// Transitions. Those marked "notify" produce notifications.
const (
	// None: nothing to record.
	None Transition = ""
	// Opened: a raise event opened an alert (notify).
	Opened Transition = "opened"
	// SeverityRaised: an event raised an active alert's severity (notify).
	SeverityRaised Transition = "severity_raised"
	// Updated: a raise event updated an active alert (count, value, peak);
	// not audited, not notified: this is what keeps a flapping sensor from
	// becoming a storm.
	Updated Transition = "updated"
	// Cleared: the condition cleared; auto-resolve starts counting.
	Cleared Transition = "cleared"
	// Recurred: the condition came back before auto-resolve.
	Recurred Transition = "recurred"
	// Acknowledged: a person acknowledged the alert (notify).
	Acknowledged Transition = "acknowledged"
	// Resolved: a person resolved the alert (notify).
	Resolved Transition = "resolved"
	// AutoResolved: the condition stayed clear for AutoResolveAfter (notify).
	AutoResolved Transition = "auto_resolved"
	// Escalated: the alert stayed unacknowledged for EscalateAfter (notify).
	Escalated Transition = "escalated"
)

// Notifies reports whether tr is sent to notification channels.
func (tr Transition) Notifies() bool {
	switch tr {
	case Opened, SeverityRaised, Acknowledged, Resolved, AutoResolved, Escalated:
		return true
	}
	return false
}

// Audited reports whether tr is recorded in alert_events.
func (tr Transition) Audited() bool { return tr != None && tr != Updated }

// Actor recorded for transitions the collector makes itself.
const SystemActor = "system"

// Policy holds the lifecycle timings. The zero value never auto-resolves
// or escalates.
type Policy struct {
	// AutoResolveAfter: an alert whose condition has been clear this long
	// is resolved. 0 disables auto-resolve.
	AutoResolveAfter time.Duration
	// EscalateAfter: an open (unacknowledged) alert is escalated after this
	// long, and again every EscalateAfter, up to MaxEscalations times.
	// 0 disables escalation.
	EscalateAfter  time.Duration
	MaxEscalations int
}

// DefaultPolicy: auto-resolve after 10 minutes clear (long enough that a
// condition which comes back within a few cycles of a machine stays one
// alert), escalate after 30 minutes unacknowledged, at most 3 times (then
// everyone who should know does).
func DefaultPolicy() Policy {
	return Policy{AutoResolveAfter: 10 * time.Minute, EscalateAfter: 30 * time.Minute, MaxEscalations: 3}
}

// Alert is the lifecycle state of one alert. Zero times mean "not set".
type Alert struct {
	ID      int64
	Sensor  string
	Site    string
	Asset   string
	Kind    string // anomaly or limit
	Rule    string // the event's rule (H, HH, a detector name)
	RuleKey string // what makes events the same problem; see RuleKey
	// Severity is the highest severity seen while the alert is active.
	Severity wire.Severity
	State    State
	// OpenedAt and LastEventAt are edge event times.
	OpenedAt    time.Time
	LastEventAt time.Time
	Count       int
	LastValue   float64
	PeakScore   float32
	Threshold   float64
	Model       string
	// Server times.
	CreatedAt       time.Time
	UpdatedAt       time.Time
	ClearSince      time.Time
	AckedAt         time.Time
	AckedBy         string
	ResolvedAt      time.Time
	ResolvedBy      string
	EscalationLevel int
	EscalatedAt     time.Time
	// Forecast: the limit the sensor trends toward and when it is expected
	// to cross it (zero when no trend toward a known limit).
	Forecast Forecast
}

// Active reports whether the alert is not resolved.
func (a *Alert) Active() bool { return a.State != StateResolved }

// RuleKey says which events are the same problem: a limit alert is keyed
// by direction, so H → HH (the edge clears H and raises HH) stays one
// alert whose severity rises; an anomaly alert by its detector.
func RuleKey(ev *wire.Event) (kind, key string) {
	if ev.Kind == wire.EventLimit {
		switch ev.Rule {
		case "H", "HH":
			return "limit", "limit:high"
		case "L", "LL":
			return "limit", "limit:low"
		}
		return "limit", "limit:" + ev.Rule
	}
	return "anomaly", "anomaly:" + ev.Rule
}

// eventTime is the event's time, but never later than now: an edge with a
// fast clock must not postpone auto-resolve.
func eventTime(ev *wire.Event, now time.Time) time.Time {
	t := time.Unix(0, ev.Time).UTC()
	if t.After(now) {
		return now
	}
	return t
}

// Apply is what one event does to the active alert for its sensor and
// rule (cur is nil when there is none). It returns the alert to store
// (nil when nothing is stored: a clear without an active alert) and the
// transition. It is pure.
func Apply(cur *Alert, ev *wire.Event, now time.Time) (*Alert, Transition) {
	et := eventTime(ev, now)
	if cur == nil || !cur.Active() {
		if ev.State != wire.EventRaised {
			return nil, None
		}
		kind, key := RuleKey(ev)
		return &Alert{
			Sensor: ev.Sensor, Asset: ev.Asset, Kind: kind, Rule: ev.Rule, RuleKey: key,
			Severity: ev.Severity, State: StateOpen, OpenedAt: et, LastEventAt: et, Count: 1,
			LastValue: ev.Value, PeakScore: ev.Score, Threshold: ev.Threshold, Model: ev.Model,
			CreatedAt: now, UpdatedAt: now,
		}, Opened
	}
	a := *cur
	a.UpdatedAt = now
	if et.After(a.LastEventAt) {
		a.LastEventAt = et
		a.LastValue = ev.Value
	}
	if ev.State == wire.EventCleared {
		if !a.ClearSince.IsZero() {
			return &a, Updated
		}
		a.ClearSince = et
		return &a, Cleared
	}
	a.Count++
	a.PeakScore = max(a.PeakScore, ev.Score)
	if ev.Model != "" {
		a.Model = ev.Model
	}
	tr := Updated
	if !a.ClearSince.IsZero() {
		a.ClearSince = time.Time{}
		tr = Recurred
	}
	if ev.Severity > a.Severity {
		a.Severity = ev.Severity
		a.Rule = ev.Rule
		a.Threshold = ev.Threshold
		tr = SeverityRaised
	}
	return &a, tr
}

// Due returns the timed transition that applies to a at now: AutoResolved,
// Escalated or None. Auto-resolve wins over escalation.
func (p Policy) Due(a *Alert, now time.Time) Transition {
	if !a.Active() {
		return None
	}
	if p.AutoResolveAfter > 0 && !a.ClearSince.IsZero() && !now.Before(a.ClearSince.Add(p.AutoResolveAfter)) {
		return AutoResolved
	}
	if t, ok := p.nextEscalation(a); ok && !now.Before(t) {
		return Escalated
	}
	return None
}

func (p Policy) nextEscalation(a *Alert) (time.Time, bool) {
	if p.EscalateAfter <= 0 || a.State != StateOpen || a.EscalationLevel >= p.MaxEscalations {
		return time.Time{}, false
	}
	since := a.CreatedAt
	if !a.EscalatedAt.IsZero() {
		since = a.EscalatedAt
	}
	return since.Add(p.EscalateAfter), true
}

// NextDue is the earliest time at which Due may return something other
// than None (zero when never). The sweeper does not use it: it finds due
// alerts with one SQL query that encodes the same rules (sweepOnce).
func (p Policy) NextDue(a *Alert) time.Time {
	if !a.Active() {
		return time.Time{}
	}
	var next time.Time
	if p.AutoResolveAfter > 0 && !a.ClearSince.IsZero() {
		next = a.ClearSince.Add(p.AutoResolveAfter)
	}
	if t, ok := p.nextEscalation(a); ok && (next.IsZero() || t.Before(next)) {
		next = t
	}
	return next
}

// Fire applies a timed transition returned by Due.
func (p Policy) Fire(a *Alert, tr Transition, now time.Time) {
	a.UpdatedAt = now
	switch tr {
	case AutoResolved:
		a.State, a.ResolvedAt, a.ResolvedBy = StateResolved, now, SystemActor
	case Escalated:
		a.EscalationLevel++
		a.EscalatedAt = now
	}
}

// Act applies a person's transition (Acknowledged or Resolved) by who.
// Acknowledging needs an open alert; resolving an active one.
func Act(a *Alert, tr Transition, who string, now time.Time) error {
	switch tr {
	case Acknowledged:
		if a.State != StateOpen {
			return fmt.Errorf("%w: cannot acknowledge a %s alert", ErrState, a.State)
		}
		a.State, a.AckedAt, a.AckedBy = StateAcknowledged, now, who
	case Resolved:
		if !a.Active() {
			return fmt.Errorf("%w: alert is already resolved", ErrState)
		}
		a.State, a.ResolvedAt, a.ResolvedBy = StateResolved, now, who
	default:
		return fmt.Errorf("%w: %q is not a person's transition", ErrInvalid, tr)
	}
	a.UpdatedAt = now
	return nil
}
