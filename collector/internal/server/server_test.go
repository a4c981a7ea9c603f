package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/collector/internal/api"
	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// env is a collector on a fresh real database, served with httptest, with
// one credential per role.
type env struct {
	srv  *Server
	http *httptest.Server
	dsn  string
	// secrets by principal name: edge, edge2, viewer, operator, admin, revoked
	sec map[string]string
}

func start(t testing.TB, mod func(*config.Config)) *env {
	t.Helper()
	dsn := testenv.Postgres(t)
	cfg := config.Default()
	cfg.Database.URL = dsn
	cfg.Database.MigrateOnStart = true
	cfg.Database.Timescale = "off"
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := New(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.DB().MaintainPartitions(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, dsn: dsn, sec: map[string]string{}}
	db := srv.DB()
	for _, name := range []string{"edge", "edge2"} {
		_, tok, err := db.RegisterEdge(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		e.sec[name] = tok
	}
	for _, r := range []store.Role{store.RoleViewer, store.RoleOperator, store.RoleAdmin} {
		_, key, err := db.CreateAPIKey(ctx, string(r), r)
		if err != nil {
			t.Fatal(err)
		}
		e.sec[string(r)] = key
	}
	k, key, err := db.CreateAPIKey(ctx, "old", store.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	e.sec["revoked"] = key
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(e.http.Close)
	return e
}

func (e *env) do(t *testing.T, method, path, who string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if s := e.sec[who]; s != "" {
		req.Header.Set("Authorization", "Bearer "+s)
	}
	if method == "POST" && strings.HasSuffix(path, "/ingest") {
		req.Header.Set("Content-Type", wire.ContentType)
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func (e *env) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, body := e.do(t, "GET", path, "viewer", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func encode(t *testing.T, b *wire.Batch) []byte {
	t.Helper()
	out, err := wire.EncodeBatch(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) ingest(t *testing.T, who string, b *wire.Batch) wire.IngestResponse {
	t.Helper()
	resp, body := e.do(t, "POST", "/api/v1/ingest", who, encode(t, b))
	if resp.StatusCode != 200 {
		t.Fatalf("ingest %s: %d %s", b.BatchID, resp.StatusCode, body)
	}
	var r wire.IngestResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

const sensorA = "site1/line1/pump1/vib"

// base is a whole hour two hours ago, so 120 one-minute readings from it
// fill exactly two hourly buckets, all in the past.
func base() time.Time { return time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour) }

func readingsBatch(id string, from time.Time, n int, seq uint64) *wire.Batch {
	b := &wire.Batch{EdgeID: "edge", BatchID: id, FirstSeq: seq, LastSeq: seq + uint64(n) - 1, SentAt: time.Now().UnixNano()}
	for i := range n {
		b.Readings = append(b.Readings, wire.Reading{Sensor: sensorA, Time: from.Add(time.Duration(i) * time.Minute).UnixNano(),
			Value: float64(i), Seq: seq + uint64(i)})
	}
	return b
}

// TestRoutesByRoleOnStore is the route × role table against the real
// store: each role gets exactly the status it should on every route.
func TestRoutesByRoleOnStore(t *testing.T) {
	e := start(t, func(c *config.Config) { c.RateLimits.Edge.PerSecond = 0; c.RateLimits.APIKey.PerSecond = 0 })
	esc := url.PathEscape(sensorA)
	// Seed data so every listing has items whose shape is checked against
	// the document: readings, a dead letter and a gap.
	seed := readingsBatch("seed", base(), 3, 1)
	seed.Readings = append(seed.Readings, wire.Reading{Sensor: sensorA, Time: base().UnixNano() + 1, Value: math.Inf(1), Seq: 4})
	seed.Gaps = []wire.Gap{{Sensor: sensorA, From: base().Add(-time.Hour).UnixNano(), To: base().UnixNano(), Count: 9, Reason: wire.GapBudget, Seq: 5}}
	if r := e.ingest(t, "edge", seed); r.Rejected != 1 {
		t.Fatalf("seed: %+v", r)
	}
	seq := uint64(100)
	routes := []struct {
		method, path string
		body         func() []byte
		ok           int
		roles        []string // allowed
	}{
		{"GET", "/healthz", nil, 200, nil},
		{"GET", "/readyz", nil, 200, nil},
		{"GET", "/openapi.json", nil, 200, nil},
		{"GET", "/metrics", nil, 200, []string{"viewer", "operator", "admin"}},
		{"POST", "/api/v1/ingest", func() []byte {
			seq += 10
			return encode(t, readingsBatch(fmt.Sprintf("b%d", seq), base().Add(time.Duration(seq)*time.Second), 1, seq))
		}, 200, []string{"edge"}},
		{"POST", "/api/v1/edges/edge/status", func() []byte { return []byte(`{"version":"1.2.3","backlog_records":5}`) }, 204, []string{"edge"}},
		{"GET", "/api/v1/sensors?site=site1", nil, 200, []string{"viewer", "operator", "admin"}},
		{"GET", "/api/v1/sensors/" + esc, nil, 200, []string{"viewer", "operator", "admin"}},
		{"GET", "/api/v1/sensors/" + esc + "/readings?step=1h", nil, 200, []string{"viewer", "operator", "admin"}},
		{"GET", "/api/v1/readings/latest?sensor=" + esc, nil, 200, []string{"viewer", "operator", "admin"}},
		{"GET", "/api/v1/edges", nil, 200, []string{"viewer", "operator", "admin"}},
		{"GET", "/api/v1/edges/edge", nil, 200, []string{"viewer", "operator", "admin"}},
		{"GET", "/api/v1/rejected", nil, 200, []string{"viewer", "operator", "admin"}},
		{"GET", "/api/v1/gaps", nil, 200, []string{"viewer", "operator", "admin"}},
		{"POST", "/api/v1/edges", func() []byte { seq++; return []byte(fmt.Sprintf(`{"name":"new%d"}`, seq)) }, 201, []string{"admin"}},
		{"DELETE", "/api/v1/edges/{new}", nil, 204, []string{"admin"}},
		{"GET", "/api/v1/apikeys", nil, 200, []string{"admin"}},
		{"POST", "/api/v1/apikeys", func() []byte { return []byte(`{"name":"ci","role":"viewer"}`) }, 201, []string{"admin"}},
		{"DELETE", "/api/v1/apikeys/{new}", nil, 204, []string{"admin"}},
		{"GET", "/api/v1/alerts?state=open&severity=critical", nil, 200, []string{"viewer", "operator", "admin"}},
		{"GET", "/api/v1/alerts/{alert}", nil, 200, []string{"viewer", "operator", "admin"}},
		{"POST", "/api/v1/alerts/{alert}/ack", func() []byte { return []byte(`{"note":"looking"}`) }, 200, []string{"operator", "admin"}},
		{"POST", "/api/v1/alerts/{alert}/resolve", func() []byte { return []byte(`{"note":"fixed"}`) }, 200, []string{"operator", "admin"}},
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	oa := loadOA(t)
	ops := 0
	for _, m := range doc.Paths {
		ops += len(m)
	}
	if ops != len(routes) {
		t.Fatalf("the table has %d routes, the OpenAPI document %d operations", len(routes), ops)
	}
	for _, rt := range routes {
		for _, who := range []string{"edge", "viewer", "operator", "admin", "none", "revoked"} {
			want := rt.ok
			switch {
			case rt.roles == nil:
			case who == "none" || who == "revoked":
				want = 401
			case !contains(rt.roles, who):
				want = 403
			}
			var body []byte
			if rt.body != nil {
				body = rt.body()
			}
			path := rt.path
			if strings.HasSuffix(path, "{new}") {
				// Something that exists and is not revoked yet.
				path = strings.TrimSuffix(path, "{new}") + e.fresh(t, strings.Contains(path, "apikeys"))
			}
			if strings.Contains(path, "{alert}") {
				// An open alert, so that acting on it can succeed.
				path = strings.Replace(path, "{alert}", fmt.Sprint(e.freshAlert(t)), 1)
			}
			resp, b := e.do(t, rt.method, path, who, body)
			oa.checkResponse(t, rt.method+" "+docPath(rt.path), resp.StatusCode, resp.Header.Get("Content-Type"), b)
			if resp.StatusCode != want {
				t.Errorf("%s %s as %s: %d, want %d: %.200s", rt.method, rt.path, who, resp.StatusCode, want, b)
			}
		}
	}
	// An edge may not post another edge's status or ingest its batches.
	if resp, b := e.do(t, "POST", "/api/v1/edges/edge/status", "edge2", []byte(`{}`)); resp.StatusCode != 403 {
		t.Errorf("edge2 posting edge's status: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do(t, "POST", "/api/v1/ingest", "edge2", encode(t, readingsBatch("x", base(), 1, 1))); resp.StatusCode != 403 {
		t.Errorf("edge2 ingesting edge's batch: %d %s", resp.StatusCode, b)
	}
	// A token an admin created over the API works; once revoked it does not.
	resp, b := e.do(t, "POST", "/api/v1/edges", "admin", []byte(`{"name":"viaapi"}`))
	var ne api.NewEdge
	if err := json.Unmarshal(b, &ne); resp.StatusCode != 201 || err != nil || ne.Token == "" {
		t.Fatalf("register over the API: %d %s", resp.StatusCode, b)
	}
	e.sec["viaapi"] = ne.Token
	st := []byte(`{"version":"1"}`)
	if resp, b := e.do(t, "POST", "/api/v1/edges/viaapi/status", "viaapi", st); resp.StatusCode != 204 {
		t.Errorf("new edge's status: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do(t, "POST", "/api/v1/edges", "admin", []byte(`{"name":"viaapi"}`)); resp.StatusCode != 409 {
		t.Errorf("duplicate edge: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do(t, "DELETE", "/api/v1/edges/viaapi", "admin", nil); resp.StatusCode != 204 {
		t.Errorf("revoke: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do(t, "POST", "/api/v1/edges/viaapi/status", "viaapi", st); resp.StatusCode != 401 {
		t.Errorf("revoked edge's status: %d %s", resp.StatusCode, b)
	}
}

// docPath turns a concrete path of the table into its documented template.
func docPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	parts := strings.Split(p, "/")
	// /api/v1/{collection}/{id}[/...]: the fourth segment is an id, except
	// under /api/v1/readings.
	if len(parts) > 4 && parts[1] == "api" && parts[3] != "readings" {
		parts[4] = "{id}"
	}
	return strings.Join(parts, "/")
}

// fresh creates an edge or an API key to revoke and returns its id.
func (e *env) fresh(t *testing.T, key bool) string {
	t.Helper()
	ctx := context.Background()
	if key {
		k, _, err := e.srv.DB().CreateAPIKey(ctx, "victim", store.RoleViewer)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(k.ID)
	}
	ed, _, err := e.srv.DB().RegisterEdge(ctx, "victim"+testenv.RandomID(4))
	if err != nil {
		t.Fatal(err)
	}
	return ed.ID
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestIngestAndQuery ingests known data through the API and reads it back:
// counts, dead letters, gaps, raw paging, buckets, latest, edge status.
func TestIngestAndQuery(t *testing.T) {
	e := start(t, nil)
	b0 := base()
	r := e.ingest(t, "edge", readingsBatch("first", b0, 120, 1))
	if r.Accepted != 120 || r.Duplicate != 0 || r.Rejected != 0 || r.BatchID != "first" {
		t.Fatalf("first batch: %+v", r)
	}
	// Replayed readings, a NaN, a future timestamp and a gap record.
	b := readingsBatch("second", b0, 10, 1)
	b.Readings = append(b.Readings,
		wire.Reading{Sensor: sensorA, Time: b0.Add(3 * time.Hour).UnixNano(), Value: math.NaN(), Seq: 200},
		wire.Reading{Sensor: sensorA, Time: time.Now().Add(48 * time.Hour).UnixNano(), Value: 1, Seq: 201})
	b.Gaps = []wire.Gap{{Sensor: sensorA, From: b0.Add(-time.Hour).UnixNano(), To: b0.Add(-30 * time.Minute).UnixNano(), Count: 30, Reason: wire.GapBudget, Seq: 202}}
	b.LastSeq = 202
	r = e.ingest(t, "edge", b)
	// Accepted counts every stored item: here the gap record.
	if r.Accepted != 1 || r.Duplicate != 10 || r.Rejected != 2 {
		t.Errorf("second batch: accepted %d duplicate %d rejected %d, want 1/10/2 (%+v)", r.Accepted, r.Duplicate, r.Rejected, r.Rejections)
	}
	var reasons []string
	for _, rj := range r.Rejections {
		reasons = append(reasons, rj.Reason)
	}
	if diff := cmp.Diff([]string{"non_finite_value", "future_timestamp"}, reasons); diff != "" {
		t.Errorf("rejection reasons (-want +got):\n%s", diff)
	}
	// Undecodable body: 400 with the dead-letter problem type.
	resp, body := e.do(t, "POST", "/api/v1/ingest", "edge", []byte("not a batch"))
	var p api.Problem
	_ = json.Unmarshal(body, &p)
	if resp.StatusCode != 400 || p.Type != api.ProblemUndecodable || resp.Header.Get("Content-Type") != api.ProblemContentType {
		t.Errorf("garbage: %d %s", resp.StatusCode, body)
	}

	esc := url.PathEscape(sensorA)
	// Raw readings, paged through next links.
	var vals []float64
	next := "/api/v1/sensors/" + esc + "/readings?limit=50&from=" + url.QueryEscape(b0.Format(time.RFC3339)) + "&to=" + url.QueryEscape(b0.Add(2*time.Hour).Format(time.RFC3339))
	pages := 0
	for next != "" {
		var l api.List[api.Point]
		e.getJSON(t, next, &l)
		for _, pt := range l.Items {
			vals = append(vals, pt.Value)
			if pt.Quality != "good" || pt.Count != 0 {
				t.Fatalf("raw point %+v", pt)
			}
		}
		next = l.Next
		if pages++; pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 || len(vals) != 120 || vals[0] != 0 || vals[119] != 119 {
		t.Errorf("raw: %d pages, %d values, want 3 pages of 120 values 0..119 without repeats: %v", pages, len(vals), vals)
	}
	// Hourly buckets on known data.
	for _, tc := range []struct {
		agg  string
		want []float64
	}{{"avg", []float64{29.5, 89.5}}, {"min", []float64{0, 60}}, {"max", []float64{59, 119}}, {"count", []float64{60, 60}}, {"last", []float64{59, 119}}} {
		var l api.List[api.Point]
		e.getJSON(t, fmt.Sprintf("/api/v1/sensors/%s/readings?step=1h&agg=%s&from=%s&to=%s", esc, tc.agg,
			url.QueryEscape(b0.Format(time.RFC3339)), url.QueryEscape(b0.Add(2*time.Hour).Format(time.RFC3339))), &l)
		var got []float64
		for i, pt := range l.Items {
			got = append(got, pt.Value)
			if !pt.Time.Equal(b0.Add(time.Duration(i)*time.Hour)) || pt.Count != 60 {
				t.Errorf("%s bucket %d: time %v count %d", tc.agg, i, pt.Time, pt.Count)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s buckets (-want +got):\n%s", tc.agg, diff)
		}
	}
	// Latest and the sensor's last value.
	var latest api.List[api.Point]
	e.getJSON(t, "/api/v1/readings/latest?sensor="+esc+"&sensor=nope%2Fx%2Fy%2Fz", &latest)
	if len(latest.Items) != 1 || latest.Items[0].Value != 119 || !latest.Items[0].Time.Equal(b0.Add(119*time.Minute)) {
		t.Errorf("latest %+v", latest)
	}
	var s api.Sensor
	e.getJSON(t, "/api/v1/sensors/"+esc, &s)
	if s.ID != sensorA || s.Site != "site1" || s.Asset != "pump1" || s.EdgeID != "edge" || !s.AutoRegistered ||
		s.LastValue == nil || *s.LastValue != 119 {
		t.Errorf("sensor %+v", s)
	}
	var sensors api.List[api.Sensor]
	e.getJSON(t, "/api/v1/sensors?site=other", &sensors)
	if len(sensors.Items) != 0 {
		t.Errorf("sensors of another site: %+v", sensors)
	}
	// Dead letters and gaps.
	var rej api.List[api.RejectedItem]
	e.getJSON(t, "/api/v1/rejected?edge=edge", &rej)
	reasons = nil
	for _, it := range rej.Items {
		reasons = append(reasons, it.Reason)
		if it.BatchID != "second" || it.Item != "reading" || len(it.Raw) == 0 {
			t.Errorf("rejected item %+v", it)
		}
	}
	if len(reasons) != 2 {
		t.Errorf("rejected reasons %v", reasons)
	}
	var gaps api.List[api.GapRecord]
	e.getJSON(t, "/api/v1/gaps?sensor="+esc, &gaps)
	if len(gaps.Items) != 1 || gaps.Items[0].Count != 30 || gaps.Items[0].Reason != wire.GapBudget {
		t.Errorf("gaps %+v", gaps)
	}
	// Status report shows on the edge.
	if resp, body := e.do(t, "POST", "/api/v1/edges/edge/status", "edge", []byte(`{"version":"9.9","backlog_records":42,"runway_hours":12.5,"clock_offset_ms":-3}`)); resp.StatusCode != 204 {
		t.Fatalf("status: %d %s", resp.StatusCode, body)
	}
	var ed api.Edge
	e.getJSON(t, "/api/v1/edges/edge", &ed)
	if ed.Version != "9.9" || ed.BacklogRecords != 42 || ed.RunwayHours != 12.5 || ed.Status == nil || ed.LastSeen == nil {
		t.Errorf("edge %+v", ed)
	}
	// Bad parameters are 400s that name the parameter.
	resp, body = e.do(t, "GET", "/api/v1/sensors/"+esc+"/readings?agg=avg&frm=1", "viewer", nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "frm") || !strings.Contains(string(body), "agg") {
		t.Errorf("bad params: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(t, "GET", "/api/v1/edges?cursor=garbage!", "viewer", nil); resp.StatusCode != 400 {
		t.Errorf("bad cursor: %d %s", resp.StatusCode, body)
	}
	// Metrics include ingest's and the HTTP counters.
	_, mbody := e.do(t, "GET", "/metrics", "viewer", nil)
	for _, m := range []string{`smartmaint_collector_http_requests_total{code="200",route="POST /api/v1/ingest"}`, "smartmaint_collector_ingest"} {
		if !strings.Contains(string(mbody), m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

// TestRateLimitOnStore: per-credential token buckets give 429 with
// Retry-After, per credential.
func TestRateLimitOnStore(t *testing.T) {
	e := start(t, func(c *config.Config) {
		// Refill takes 100 s, so timing cannot make this flaky.
		c.RateLimits.APIKey = config.Rate{PerSecond: 0.01, Burst: 2}
		c.RateLimits.Edge = config.Rate{PerSecond: 0.01, Burst: 1}
	})
	var got []int
	for range 3 {
		resp, _ := e.do(t, "GET", "/api/v1/edges", "viewer", nil)
		got = append(got, resp.StatusCode)
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	resp, _ := e.do(t, "GET", "/api/v1/edges", "admin", nil)
	got = append(got, resp.StatusCode)
	b := readingsBatch("r1", base(), 1, 1)
	r1, _ := e.do(t, "POST", "/api/v1/ingest", "edge", encode(t, b))
	b.BatchID = "r2"
	r2, _ := e.do(t, "POST", "/api/v1/ingest", "edge", encode(t, b))
	got = append(got, r1.StatusCode, r2.StatusCode)
	if diff := cmp.Diff([]int{200, 200, 429, 200, 200, 429}, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if ra := r2.Header.Get("Retry-After"); ra != "100" {
		t.Errorf("edge Retry-After %q, want 100", ra)
	}
}

// TestOverloadOnStore: when the database is too slow (the readings table
// is locked by another session), ingest answers 503 with Retry-After
// instead of hanging, and accepts the batch once the database is back.
func TestOverloadOnStore(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Ingest.WriteTimeout = 500 * time.Millisecond
		c.Ingest.RetryAfter = 7 * time.Second
	})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE readings IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	body := encode(t, readingsBatch("slow", base(), 5, 1))
	resp, b := e.do(t, "POST", "/api/v1/ingest", "edge", body)
	var p api.Problem
	_ = json.Unmarshal(b, &p)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" || p.Type != api.ProblemOverloaded {
		t.Errorf("locked database: %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	resp, b = e.do(t, "POST", "/api/v1/ingest", "edge", body)
	var r wire.IngestResponse
	_ = json.Unmarshal(b, &r)
	if resp.StatusCode != 200 || r.Accepted != 5 {
		t.Errorf("after unlock: %d %s", resp.StatusCode, b)
	}
}
