package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeAlerts is an in-memory Alerts with one open alert (id 1).
type fakeAlerts struct {
	mu      sync.Mutex
	alerts  map[int64]*Alert
	events  map[int64][]AlertEvent
	filters []AlertFilter
	actions []string
}

func newFakeAlerts() *fakeAlerts {
	a := &Alert{ID: 1, Sensor: "s1/line/pump0/vib", Site: "s1", Asset: "pump0", Kind: "limit", Rule: "HH",
		Severity: "critical", State: "open", OpenedAt: t0, LastEventAt: t0, Count: 3, LastValue: 12.5, PeakScore: 1,
		Threshold: 10, CreatedAt: t0, UpdatedAt: t0,
		TimeToLimit: &TimeToLimit{Limit: 20, ExpectedAt: t0.Add(3600e9), TrendPerHour: 7.5}}
	return &fakeAlerts{alerts: map[int64]*Alert{1: a},
		events: map[int64][]AlertEvent{1: {{ID: 1, At: t0, Transition: "opened", Actor: "system", Severity: "critical"}}}}
}

func (f *fakeAlerts) ListAlerts(_ context.Context, fl AlertFilter, p Page) ([]Alert, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, fl)
	if p.Cursor != "" && p.Cursor != "c1" {
		return nil, "", fmt.Errorf("%w: cursor", ErrInvalidQuery)
	}
	return []Alert{*f.alerts[1]}, "", nil
}

func (f *fakeAlerts) GetAlert(_ context.Context, id int64) (AlertDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.alerts[id]
	if !ok {
		return AlertDetail{}, ErrNotFound
	}
	return AlertDetail{Alert: *a, Events: f.events[id], RecentReadings: []Point{{Sensor: a.Sensor, Time: t0, Value: 12.5, Quality: "good"}}}, nil
}

func (f *fakeAlerts) AlertAction(_ context.Context, id int64, action, actor, note string) (Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.alerts[id]
	if !ok {
		return Alert{}, ErrNotFound
	}
	if len(note) > 2000 {
		return Alert{}, fmt.Errorf("%w: note too long", ErrInvalidArgument)
	}
	switch {
	case action == ActionAck && a.State == "open":
		a.State, a.AckedBy = "acknowledged", actor
	case action == ActionResolve && a.State != "resolved":
		a.State, a.ResolvedBy = "resolved", actor
	default:
		return Alert{}, fmt.Errorf("%w: cannot %s a %s alert", ErrConflict, action, a.State)
	}
	f.actions = append(f.actions, action+" by "+actor+": "+note)
	return *a, nil
}

func TestAlertRoutes(t *testing.T) {
	d := loadDoc(t)
	fa := newFakeAlerts()
	h := newTestHandler(t, newFake(), func(o *Options) { o.Alerts = fa })
	cases := []struct {
		name, method, target, body string
		secret                     string
		want                       int
		pattern                    string
	}{
		{"list filters", "GET", "/api/v1/alerts?state=open&state=acknowledged&severity=critical&site=s1&from=2026-03-01T00:00:00Z", "", secViewer, 200, "GET /api/v1/alerts"},
		{"bad state", "GET", "/api/v1/alerts?state=closed", "", secViewer, 400, "GET /api/v1/alerts"},
		{"bad cursor", "GET", "/api/v1/alerts?cursor=zz", "", secViewer, 400, "GET /api/v1/alerts"},
		{"from after to", "GET", "/api/v1/alerts?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "", secViewer, 400, "GET /api/v1/alerts"},
		{"get", "GET", "/api/v1/alerts/1", "", secViewer, 200, "GET /api/v1/alerts/{id}"},
		{"get missing", "GET", "/api/v1/alerts/9", "", secViewer, 404, "GET /api/v1/alerts/{id}"},
		{"get bad id", "GET", "/api/v1/alerts/x", "", secViewer, 400, "GET /api/v1/alerts/{id}"},
		{"ack unknown field", "POST", "/api/v1/alerts/1/ack", `{"notes":"x"}`, secOperator, 400, "POST /api/v1/alerts/{id}/ack"},
		{"ack", "POST", "/api/v1/alerts/1/ack", `{"note":"looking"}`, secOperator, 200, "POST /api/v1/alerts/{id}/ack"},
		{"ack twice", "POST", "/api/v1/alerts/1/ack", `{"note":"again"}`, secOperator, 409, "POST /api/v1/alerts/{id}/ack"},
		{"resolve without body", "POST", "/api/v1/alerts/1/resolve", "", secAdmin, 200, "POST /api/v1/alerts/{id}/resolve"},
		{"resolve missing", "POST", "/api/v1/alerts/7/resolve", "", secAdmin, 404, "POST /api/v1/alerts/{id}/resolve"},
		{"note too long", "POST", "/api/v1/alerts/1/resolve", `{"note":"` + strings.Repeat("x", 2001) + `"}`, secAdmin, 400, "POST /api/v1/alerts/{id}/resolve"},
		{"viewer cannot ack", "POST", "/api/v1/alerts/1/ack", `{}`, secViewer, 403, "POST /api/v1/alerts/{id}/ack"},
	}
	for _, c := range cases {
		w := request(t, h, c.method, c.target, c.secret, c.body)
		if w.Code != c.want {
			t.Errorf("%s: %s %s: %d, want %d: %s", c.name, c.method, c.target, w.Code, c.want, w.Body)
		}
		checkDocumented(t, d, c.pattern, w.Code)
	}
	gotF := fa.filters[0]
	wantF := AlertFilter{States: []string{"open", "acknowledged"}, Severities: []string{"critical"}, Site: "s1", From: t0.Truncate(24 * time.Hour)}
	if diff := cmp.Diff(wantF, gotF); diff != "" {
		t.Errorf("filter passed on (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ack by oncall: looking", "resolve by root: "}, fa.actions); diff != "" {
		t.Errorf("actions (principal name recorded) (-want +got):\n%s", diff)
	}
	w := request(t, h, "GET", "/api/v1/alerts/1", secViewer, "")
	var got AlertDetail
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
		t.Fatalf("detail: %d %v", w.Code, err)
	}
	if got.State != "resolved" || got.ResolvedBy != "root" || len(got.Events) != 1 || len(got.RecentReadings) != 1 || got.TimeToLimit == nil {
		t.Errorf("detail: %+v", got)
	}
}
