package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// AlertFilter narrows an alert listing; zero fields match everything.
// From and To bound the opening time, [From, To).
type AlertFilter struct {
	States     []string
	Severities []string
	Site       string
	Asset      string
	Sensor     string
	From, To   time.Time
}

// Alert is one alert (ARCHITECTURE.md §4.5).
type Alert struct {
	ID     int64  `json:"id"`
	Sensor string `json:"sensor"`
	Site   string `json:"site"`
	Asset  string `json:"asset"`
	// Kind is anomaly or limit; Rule the limit (H, HH, L, LL) or detector.
	Kind     string `json:"kind"`
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	State    string `json:"state"`
	// OpenedAt and LastEventAt are the edge's event times.
	OpenedAt    time.Time `json:"opened_at"`
	LastEventAt time.Time `json:"last_event_at"`
	// Count of raise events merged into this alert.
	Count     int       `json:"count"`
	LastValue float64   `json:"last_value"`
	PeakScore float32   `json:"peak_score"`
	Threshold float64   `json:"threshold"`
	Model     string    `json:"model,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// ClearSince is when the condition cleared; auto-resolve counts from it.
	ClearSince      *time.Time `json:"clear_since,omitempty"`
	AckedAt         *time.Time `json:"acked_at,omitempty"`
	AckedBy         string     `json:"acked_by,omitempty"`
	ResolvedAt      *time.Time `json:"resolved_at,omitempty"`
	ResolvedBy      string     `json:"resolved_by,omitempty"`
	EscalationLevel int        `json:"escalation_level"`
	EscalatedAt     *time.Time `json:"escalated_at,omitempty"`
	// TimeToLimit is present when the sensor trends toward a limit.
	TimeToLimit *TimeToLimit `json:"time_to_limit,omitempty"`
}

// TimeToLimit forecasts when a sensor crosses a limit.
type TimeToLimit struct {
	Limit        float64   `json:"limit"`
	ExpectedAt   time.Time `json:"expected_at"`
	TrendPerHour float64   `json:"trend_per_hour"`
}

// AlertEvent is one entry of an alert's audit trail.
type AlertEvent struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Transition string    `json:"transition"`
	Actor      string    `json:"actor"`
	Note       string    `json:"note,omitempty"`
	Severity   string    `json:"severity"`
	Value      *float64  `json:"value,omitempty"`
	Score      *float32  `json:"score,omitempty"`
}

// AlertDetail is an alert with its audit trail and its sensor's recent
// readings (newest first).
type AlertDetail struct {
	Alert
	Events         []AlertEvent `json:"events"`
	RecentReadings []Point      `json:"recent_readings"`
}

// Alert actions (AlertAction).
const (
	ActionAck     = "ack"
	ActionResolve = "resolve"
)

// Alerts reads alerts and applies people's actions. AlertAction returns
// errors wrapping ErrNotFound, ErrConflict (the alert's state does not
// allow it) or ErrInvalidArgument (bad note). Safe for concurrent use.
type Alerts interface {
	ListAlerts(ctx context.Context, f AlertFilter, p Page) ([]Alert, string, error)
	GetAlert(ctx context.Context, id int64) (AlertDetail, error)
	AlertAction(ctx context.Context, id int64, action, actor, note string) (Alert, error)
}

var (
	alertStates     = []string{"open", "acknowledged", "resolved"}
	alertSeverities = []string{"warning", "minor", "major", "critical"}
)

func (h *Handler) listAlerts(w http.ResponseWriter, r *http.Request, _ Principal) {
	q := parseQuery(r.URL.RawQuery, "state", "severity", "site", "asset", "sensor", "from", "to", "cursor", "limit")
	var f AlertFilter
	f.States = q.enums("state", alertStates...)
	f.Severities = q.enums("severity", alertSeverities...)
	f.Site, f.Asset, f.Sensor = q.str("site"), q.str("asset"), q.str("sensor")
	f.From, _ = q.time("from")
	f.To, _ = q.time("to")
	pg := q.page(h.opts.Limits)
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		q.add("from", "must be before to")
	}
	if p := q.problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	items, next, err := h.opts.Alerts.ListAlerts(r.Context(), f, pg)
	if err != nil {
		h.pageError(w, r, "list alerts", err)
		return
	}
	writeList(w, r, items, next)
}

// enums returns the values of a repeatable parameter, each one of allowed.
func (q *queryParser) enums(name string, allowed ...string) []string {
	vs := q.strs(name)
	for _, v := range vs {
		ok := false
		for _, a := range allowed {
			ok = ok || v == a
		}
		if !ok {
			q.add(name, "must be one of "+strings.Join(allowed, ", "))
			return nil
		}
	}
	return vs
}

func alertID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeProblem(w, r, Problem{Type: ProblemBadRequest, Status: 400, Detail: "alert id must be a positive integer"}, 0)
		return 0, false
	}
	return id, true
}

func (h *Handler) getAlert(w http.ResponseWriter, r *http.Request, _ Principal) {
	id, ok := alertID(w, r)
	if !ok {
		return
	}
	if p := parseQuery(r.URL.RawQuery).problem(); p != nil {
		writeProblem(w, r, *p, 0)
		return
	}
	d, err := h.opts.Alerts.GetAlert(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		h.notFound(w, r, "alert")
	case err != nil:
		h.internal(w, r, "get alert", err)
	default:
		if d.Events == nil {
			d.Events = []AlertEvent{}
		}
		if d.RecentReadings == nil {
			d.RecentReadings = []Point{}
		}
		writeJSON(w, http.StatusOK, d)
	}
}

func (h *Handler) ackAlert(w http.ResponseWriter, r *http.Request, p Principal) {
	h.alertAction(w, r, p, ActionAck)
}

func (h *Handler) resolveAlert(w http.ResponseWriter, r *http.Request, p Principal) {
	h.alertAction(w, r, p, ActionResolve)
}

// alertAction handles POST /api/v1/alerts/{id}/ack|resolve with an
// optional JSON body {"note": "..."}; the principal's name is recorded.
func (h *Handler) alertAction(w http.ResponseWriter, r *http.Request, p Principal, action string) {
	id, ok := alertID(w, r)
	if !ok {
		return
	}
	var req struct {
		Note string `json:"note"`
	}
	if r.ContentLength != 0 {
		if !h.decodeBody(w, r, &req) {
			return
		}
	} else if q := parseQuery(r.URL.RawQuery).problem(); q != nil {
		writeProblem(w, r, *q, 0)
		return
	}
	a, err := h.opts.Alerts.AlertAction(r.Context(), id, action, p.Name, req.Note)
	switch {
	case errors.Is(err, ErrNotFound):
		h.notFound(w, r, "alert")
	case errors.Is(err, ErrConflict):
		writeProblem(w, r, Problem{Type: ProblemConflict, Status: 409, Detail: err.Error()}, 0)
	case errors.Is(err, ErrInvalidArgument):
		writeProblem(w, r, Problem{Type: ProblemBadRequest, Status: 400, Detail: err.Error()}, 0)
	case err != nil:
		h.internal(w, r, action+" alert", err)
	default:
		writeJSON(w, http.StatusOK, a)
	}
}
