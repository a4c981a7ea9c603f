package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/collector/internal/alert"
	"github.com/smartmaint/smartmaint/collector/internal/api"
	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/collector/internal/notify"
	"github.com/smartmaint/smartmaint/shared/wire"
)

var alertSeq atomic.Uint64

// freshAlert opens a new critical limit alert on a new sensor through
// ingest and returns its id.
func (e *env) freshAlert(t *testing.T) int64 {
	t.Helper()
	n := alertSeq.Add(1)
	sensor := fmt.Sprintf("site1/line1/fresh%d/temp", n)
	seq := 1_000_000 + n*10
	now := time.Now().UTC()
	b := &wire.Batch{EdgeID: "edge", BatchID: fmt.Sprintf("fresh-%d", n), FirstSeq: seq, LastSeq: seq + 1,
		Readings: []wire.Reading{{Sensor: sensor, Time: now.UnixNano(), Value: 99, Seq: seq}},
		Events: []wire.Event{{Sensor: sensor, Asset: fmt.Sprintf("fresh%d", n), Kind: wire.EventLimit, State: wire.EventRaised,
			Severity: wire.SeverityCritical, Rule: "HH", Time: now.UnixNano(), WindowStart: now.UnixNano(), WindowEnd: now.UnixNano(),
			Value: 99, Score: 1, Threshold: 90, Seq: seq + 1}}}
	if r := e.ingest(t, "edge", b); r.Accepted != 2 {
		t.Fatalf("fresh alert batch: %+v", r)
	}
	var id int64
	if err := e.srv.DB().Pool().QueryRow(context.Background(),
		`SELECT id FROM alerts WHERE sensor = $1 AND state = 'open'`, sensor).Scan(&id); err != nil {
		t.Fatalf("fresh alert: %v", err)
	}
	return id
}

// TestAlertsThroughIngest: events arriving with a batch open and update
// alerts in the batch's transaction; a sensor oscillating around its limit
// gives one alert; the trend gives a time to limit; ack and resolve over
// the API record the principal and queue notifications; every answer
// matches the OpenAPI document.
func TestAlertsThroughIngest(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.RateLimits.Edge.PerSecond, c.RateLimits.APIKey.PerSecond = 0, 0
		c.Notify.Workers = false // rows stay in the outbox for inspection
		c.Notify.Channels = []config.Channel{{Name: "am", Type: "alertmanager", URL: "http://127.0.0.1:1"}}
		c.Alerts.PublicBaseURL = "https://collector.example.com"
	})
	ctx := context.Background()
	pool := e.srv.DB().Pool()
	oa := loadOA(t)
	const sensor = "plant1/line1/pump9/temp"
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	// 60 readings rising 1 unit per minute from 20; range max 150, so at
	// 79 + 1/min the limit is ~71 minutes after the last reading.
	b := &wire.Batch{EdgeID: "edge", BatchID: "trend", FirstSeq: 1, LastSeq: 60}
	for i := range 60 {
		b.Readings = append(b.Readings, wire.Reading{Sensor: sensor, Time: start.Add(time.Duration(i) * time.Minute).UnixNano(),
			Value: 20 + float64(i), Seq: uint64(i + 1)})
	}
	e.ingest(t, "edge", b)
	if _, err := pool.Exec(ctx, `UPDATE sensors SET range_max = 150 WHERE id = $1`, sensor); err != nil {
		t.Fatal(err)
	}
	// The edge's hysteresis failed to hold (or the signal really flaps):
	// ten raise/clear pairs within minutes, in separate batches.
	seq := uint64(100)
	evTime := start.Add(59 * time.Minute)
	for i := range 10 {
		var evs []wire.Event
		for _, st := range []wire.EventState{wire.EventRaised, wire.EventCleared} {
			seq++
			evs = append(evs, wire.Event{Sensor: sensor, Asset: "pump9", Kind: wire.EventLimit, State: st, Severity: wire.SeverityMajor,
				Rule: "H", Time: evTime.Add(time.Duration(i*2+int(st)) * time.Second).UnixNano(), Value: 79, Score: 0.75, Threshold: 75, Seq: seq})
		}
		e.ingest(t, "edge", &wire.Batch{EdgeID: "edge", BatchID: fmt.Sprintf("flap%d", i), FirstSeq: seq - 1, LastSeq: seq, Events: evs})
	}
	// A replayed batch must not count again.
	e.ingest(t, "edge", &wire.Batch{EdgeID: "edge", BatchID: "flap-replay", FirstSeq: 101, LastSeq: 102, Events: []wire.Event{
		{Sensor: sensor, Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityMajor, Rule: "H", Time: evTime.UnixNano(), Value: 79, Threshold: 75, Seq: 101}}})

	resp, body := e.do(t, "GET", "/api/v1/alerts?sensor="+sensor, "viewer", nil)
	oa.checkResponse(t, "GET /api/v1/alerts", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	var list api.List[api.Alert]
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if len(list.Items) != 1 {
		t.Fatalf("flapping sensor gave %d alerts, want 1: %s", len(list.Items), body)
	}
	a := list.Items[0]
	if a.Count != 10 || a.State != "open" || a.Severity != "major" || a.Site != "plant1" || a.Kind != "limit" || a.ClearSince == nil {
		t.Errorf("alert after flapping: %+v", a)
	}
	if a.TimeToLimit == nil {
		t.Fatalf("no time to limit for a sensor rising 1/min toward 150: %s", body)
	}
	wantETA := start.Add(59*time.Minute + 71*time.Minute)
	if d := a.TimeToLimit.ExpectedAt.Sub(wantETA); d < -time.Minute || d > time.Minute || a.TimeToLimit.Limit != 150 {
		t.Errorf("time to limit %+v, want limit 150 at %s", a.TimeToLimit, wantETA)
	}
	var events, queued int
	pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE sensor = $1 AND processed_at IS NOT NULL`, sensor).Scan(&events)
	pool.QueryRow(ctx, `SELECT count(*) FROM notification_outbox WHERE alert_id = $1`, a.ID).Scan(&queued)
	if events != 20 || queued != 1 {
		t.Errorf("processed events %d (want 20), queued notifications %d (want 1: opened only, no storm)", events, queued)
	}

	// H → HH: the edge clears H and raises HH; the same alert, now critical.
	e.ingest(t, "edge", &wire.Batch{EdgeID: "edge", BatchID: "hh", FirstSeq: 200, LastSeq: 201, Events: []wire.Event{
		{Sensor: sensor, Kind: wire.EventLimit, State: wire.EventCleared, Severity: wire.SeverityMajor, Rule: "H", Time: evTime.Add(time.Minute).UnixNano(), Value: 91, Threshold: 75, Seq: 200},
		{Sensor: sensor, Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityCritical, Rule: "HH", Time: evTime.Add(time.Minute).UnixNano(), Value: 91, Score: 1, Threshold: 90, Seq: 201}}})

	id := fmt.Sprint(a.ID)
	if resp, body := e.do(t, "POST", "/api/v1/alerts/"+id+"/ack", "viewer", []byte(`{"note":"x"}`)); resp.StatusCode != 403 {
		t.Errorf("viewer ack: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "POST", "/api/v1/alerts/"+id+"/ack", "operator", []byte(`{"note":"crew on the way"}`))
	oa.checkResponse(t, "POST /api/v1/alerts/{id}/ack", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	if resp.StatusCode != 200 {
		t.Fatalf("ack: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "POST", "/api/v1/alerts/"+id+"/ack", "admin", nil)
	oa.checkResponse(t, "POST /api/v1/alerts/{id}/ack", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	if resp.StatusCode != 409 {
		t.Errorf("second ack: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "POST", "/api/v1/alerts/"+id+"/resolve", "admin", []byte(`{"note":"bearing replaced"}`))
	if resp.StatusCode != 200 {
		t.Fatalf("resolve: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/api/v1/alerts/"+id, "viewer", nil)
	oa.checkResponse(t, "GET /api/v1/alerts/{id}", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	var d api.AlertDetail
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, ev := range d.Events {
		trail = append(trail, ev.Transition+"/"+ev.Actor+"/"+ev.Note)
	}
	want := []string{"opened/system/", "cleared/system/"}
	for range 9 {
		want = append(want, "recurred/system/", "cleared/system/")
	}
	want = append(want, "severity_raised/system/", "acknowledged/operator/crew on the way", "resolved/admin/bearing replaced")
	if fmt.Sprint(trail) != fmt.Sprint(want) {
		t.Errorf("audit trail:\n got %v\nwant %v", trail, want)
	}
	if d.Severity != "critical" || d.Rule != "HH" || d.State != "resolved" || d.AckedBy != "operator" || d.ResolvedBy != "admin" {
		t.Errorf("alert after HH, ack, resolve: %+v", d.Alert)
	}
	if len(d.RecentReadings) != 60 || d.RecentReadings[0].Value != 79 {
		t.Errorf("recent readings: %d, first %+v", len(d.RecentReadings), d.RecentReadings)
	}
	var kinds []string
	rows, _ := pool.Query(ctx, `SELECT transition FROM notification_outbox WHERE alert_id = $1 ORDER BY id`, a.ID)
	for rows.Next() {
		var k string
		rows.Scan(&k)
		kinds = append(kinds, k)
	}
	if fmt.Sprint(kinds) != "[opened severity_raised acknowledged resolved]" {
		t.Errorf("queued notifications: %v", kinds)
	}
	var payload string
	pool.QueryRow(ctx, `SELECT payload->>'url' FROM notification_outbox WHERE alert_id = $1 LIMIT 1`, a.ID).Scan(&payload)
	if payload != "https://collector.example.com/api/v1/alerts/"+id {
		t.Errorf("link in notification: %q", payload)
	}
	// A new raise after resolution opens a new alert.
	e.ingest(t, "edge", &wire.Batch{EdgeID: "edge", BatchID: "again", FirstSeq: 300, LastSeq: 300, Events: []wire.Event{
		{Sensor: sensor, Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityMajor, Rule: "H", Time: time.Now().UnixNano(), Value: 80, Threshold: 75, Seq: 300}}})
	e.getJSON(t, "/api/v1/alerts?sensor="+sensor+"&state=open", &list)
	if len(list.Items) != 1 || list.Items[0].ID == a.ID {
		t.Errorf("raise after resolve: %+v", list.Items)
	}
}

// TestNotificationEndToEnd: an edge event becomes an alert, the alert a
// signed webhook call from the outbox workers; an operator's ack another.
func TestNotificationEndToEnd(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "hook-secret")
	if err := os.WriteFile(secretFile, []byte("e2e-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan alert.Notification, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.VerifySignature([]byte("e2e-secret"), r.Header.Get(notify.HeaderTimestamp),
			r.Header.Get(notify.HeaderSignature), body, time.Now(), notify.DefaultReplayWindow); err != nil {
			t.Errorf("signature: %v", err)
			http.Error(w, err.Error(), 401)
			return
		}
		var m struct {
			Items []alert.Notification `json:"items"`
		}
		json.Unmarshal(body, &m)
		for _, it := range m.Items {
			got <- it
		}
	}))
	defer hook.Close()
	e := start(t, func(c *config.Config) {
		c.RateLimits.Edge.PerSecond, c.RateLimits.APIKey.PerSecond = 0, 0
		c.Notify.PollInterval, c.Notify.GroupWindow = 20*time.Millisecond, 0
		c.Notify.Channels = []config.Channel{{Name: "hook", Type: "webhook", URL: hook.URL, Secret: config.Secret{File: secretFile}}}
		c.Notify.Routes = []config.Route{{MinSeverity: "major", Channels: []string{"hook"}}}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.srv.alerts.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	now := time.Now().UTC()
	const sensor = "plant2/line1/fan3/vib"
	e.ingest(t, "edge", &wire.Batch{EdgeID: "edge", BatchID: "anomaly", FirstSeq: 1, LastSeq: 2, Events: []wire.Event{
		// minor: routed nowhere.
		{Sensor: "plant2/line1/fan4/vib", Kind: wire.EventAnomaly, State: wire.EventRaised, Severity: wire.SeverityMinor, Rule: "mad",
			Time: now.UnixNano(), Value: 3, Score: 0.7, Threshold: 0.6, Model: "mad@1", Seq: 1},
		{Sensor: sensor, Asset: "fan3", Kind: wire.EventAnomaly, State: wire.EventRaised, Severity: wire.SeverityMajor, Rule: "mad",
			Time: now.UnixNano(), Value: 7.5, Score: 0.93, Threshold: 0.6, Model: "mad@1", Seq: 2}}})
	wait := func() alert.Notification {
		select {
		case n := <-got:
			return n
		case <-time.After(15 * time.Second):
			t.Fatal("no notification within 15s")
		}
		return alert.Notification{}
	}
	n := wait()
	if n.Sensor != sensor || n.Transition != alert.Opened || n.Severity != "major" || n.Site != "plant2" || n.Asset != "fan3" ||
		n.Key == "" || !strings.HasSuffix(n.URL, fmt.Sprintf("/api/v1/alerts/%d", n.AlertID)) {
		t.Errorf("opened notification: %+v", n)
	}
	resp, body := e.do(t, "POST", fmt.Sprintf("/api/v1/alerts/%d/ack", n.AlertID), "operator", []byte(`{"note":"checking fan"}`))
	if resp.StatusCode != 200 {
		t.Fatalf("ack: %d %s", resp.StatusCode, body)
	}
	a := wait()
	if a.Transition != alert.Acknowledged || a.Actor != "operator" || a.Note != "checking fan" || a.Key == n.Key {
		t.Errorf("ack notification: %+v", a)
	}
	select {
	case x := <-got:
		t.Errorf("unexpected notification %+v (minor alerts are not routed)", x)
	case <-time.After(200 * time.Millisecond):
	}
}
