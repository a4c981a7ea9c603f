package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// doc is the parsed OpenAPI document, enough of it for the checks.
type doc struct {
	Paths map[string]map[string]struct {
		Security  *[]map[string][]string     `json:"security"`
		Responses map[string]json.RawMessage `json:"responses"`
	} `json:"paths"`
}

func loadDoc(t *testing.T) doc {
	t.Helper()
	var d doc
	if err := json.Unmarshal(openAPIDoc, &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return d
}

// checkDocumented fails when the document does not list code for pattern.
func checkDocumented(t *testing.T, d doc, pattern string, code int) {
	t.Helper()
	method, path, _ := strings.Cut(pattern, " ")
	op, ok := d.Paths[path][strings.ToLower(method)]
	if !ok {
		t.Errorf("openapi.json has no operation %s", pattern)
		return
	}
	if _, ok := op.Responses[strconv.Itoa(code)]; !ok {
		t.Errorf("openapi.json: %s does not document status %d", pattern, code)
	}
}

func request(t *testing.T, h http.Handler, method, target, secret string, body string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func batchJSON(t *testing.T, b wire.Batch) string {
	t.Helper()
	js, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

// TestOpenAPIMatchesRoutes walks every registered route and checks that
// the document has the operation with every status code the route may
// answer, and that the document has nothing that is not registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	d := loadDoc(t)
	h := newTestHandler(t, newFake(), func(o *Options) { o.Metrics = http.NotFoundHandler() })
	registered := map[string]bool{}
	for _, rt := range h.routes {
		registered[rt.pattern] = true
		codes := slices.Clone(rt.codes)
		if !rt.public() {
			codes = append(codes, 401, 403, 429, 503)
		}
		for _, c := range codes {
			checkDocumented(t, d, rt.pattern, c)
		}
		method, path, _ := strings.Cut(rt.pattern, " ")
		op := d.Paths[path][strings.ToLower(method)]
		public := op.Security != nil && len(*op.Security) == 0
		if public != rt.public() {
			t.Errorf("%s: document says public=%v, route table says %v", rt.pattern, public, rt.public())
		}
	}
	for path, ops := range d.Paths {
		for method := range ops {
			p := strings.ToUpper(method) + " " + path
			if !registered[p] {
				t.Errorf("openapi.json documents %s, which is not registered", p)
			}
		}
	}
	// The served document is the embedded one.
	w := request(t, h, "GET", "/openapi.json", "", "")
	if w.Code != 200 || w.Body.String() != string(openAPIDoc) {
		t.Errorf("GET /openapi.json: %d, body differs=%v", w.Code, w.Body.String() != string(openAPIDoc))
	}
}

// TestRoutesByRole is the route × role table: each role gets exactly what
// it should, and every status seen is documented.
func TestRoutesByRole(t *testing.T) {
	d := loadDoc(t)
	okBatch := batchJSON(t, wire.Batch{EdgeID: "e1", BatchID: "b1", Readings: []wire.Reading{{Sensor: "s1/line/pump0/vib", Time: t0.UnixNano(), Value: 1}}})
	status := `{"version":"1.0","broker":"connected","backlog_records":3}`
	type call struct{ method, target, body string }
	calls := map[string]call{
		"GET /healthz":                      {"GET", "/healthz", ""},
		"GET /readyz":                       {"GET", "/readyz", ""},
		"GET /openapi.json":                 {"GET", "/openapi.json", ""},
		"GET /metrics":                      {"GET", "/metrics", ""},
		"POST /api/v1/ingest":               {"POST", "/api/v1/ingest", okBatch},
		"POST /api/v1/edges/{id}/status":    {"POST", "/api/v1/edges/e1/status", status},
		"GET /api/v1/sensors":               {"GET", "/api/v1/sensors?site=s1", ""},
		"GET /api/v1/sensors/{id}":          {"GET", "/api/v1/sensors/s1%2Fline%2Fpump0%2Fvib", ""},
		"GET /api/v1/sensors/{id}/readings": {"GET", "/api/v1/sensors/s1%2Fline%2Fpump0%2Fvib/readings?from=2026-03-01T11:00:00Z", ""},
		"GET /api/v1/readings/latest":       {"GET", "/api/v1/readings/latest?sensor=s1%2Fline%2Fpump0%2Fvib", ""},
		"GET /api/v1/edges":                 {"GET", "/api/v1/edges", ""},
		"GET /api/v1/edges/{id}":            {"GET", "/api/v1/edges/e1", ""},
		"GET /api/v1/rejected":              {"GET", "/api/v1/rejected", ""},
		"GET /api/v1/gaps":                  {"GET", "/api/v1/gaps", ""},
		"POST /api/v1/edges":                {"POST", "/api/v1/edges", `{"name":"new-edge"}`},
		"DELETE /api/v1/edges/{id}":         {"DELETE", "/api/v1/edges/e2", ""},
		"GET /api/v1/apikeys":               {"GET", "/api/v1/apikeys", ""},
		"POST /api/v1/apikeys":              {"POST", "/api/v1/apikeys", `{"name":"ci","role":"viewer"}`},
		"DELETE /api/v1/apikeys/{id}":       {"DELETE", "/api/v1/apikeys/1", ""},
		"GET /api/v1/alerts":                {"GET", "/api/v1/alerts?state=open&severity=major", ""},
		"GET /api/v1/alerts/{id}":           {"GET", "/api/v1/alerts/1", ""},
		"POST /api/v1/alerts/{id}/ack":      {"POST", "/api/v1/alerts/1/ack", `{"note":"on it"}`},
		"POST /api/v1/alerts/{id}/resolve":  {"POST", "/api/v1/alerts/1/resolve", `{"note":"bearing replaced"}`},
	}
	// want[role] for each class of route; the success code per route.
	success := map[string]int{"POST /api/v1/edges/{id}/status": 204, "POST /api/v1/edges": 201,
		"DELETE /api/v1/edges/{id}": 204, "POST /api/v1/apikeys": 201, "DELETE /api/v1/apikeys/{id}": 204}
	roles := []struct {
		name, secret string
		role         Role // "" for none/revoked
	}{
		{"edge", secEdge, RoleEdge}, {"viewer", secViewer, RoleViewer}, {"operator", secOperator, RoleOperator},
		{"admin", secAdmin, RoleAdmin}, {"none", "", ""}, {"revoked", secRevoked, ""},
	}
	h := newTestHandler(t, newFake(), func(o *Options) {
		o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "# metrics\n") })
	})
	if got, want := len(calls), len(h.routes); got != want {
		t.Fatalf("table covers %d routes, handler has %d", got, want)
	}
	for _, rt := range h.routes {
		c, ok := calls[rt.pattern]
		if !ok {
			t.Fatalf("route %s missing from the table", rt.pattern)
		}
		for _, ro := range roles {
			t.Run(rt.pattern+"/"+ro.name, func(t *testing.T) {
				want := success[rt.pattern]
				if want == 0 {
					want = 200
				}
				switch {
				case rt.public():
				case ro.role == "":
					want = 401
				case !rt.allows(ro.role):
					want = 403
				}
				// A fresh backend per call, so creating and revoking can
				// succeed for every role that may do it.
				h := newTestHandler(t, newFake(), func(o *Options) {
					o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "# metrics\n") })
				})
				w := request(t, h, c.method, c.target, ro.secret, c.body)
				if w.Code != want {
					t.Errorf("%s as %s: status %d, want %d; body %s", c.target, ro.name, w.Code, want, w.Body)
				}
				if w.Code >= 400 && w.Header().Get("Content-Type") != ProblemContentType {
					t.Errorf("error without problem+json: %q", w.Header().Get("Content-Type"))
				}
				if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				checkDocumented(t, d, rt.pattern, w.Code)
			})
		}
	}
	// The exact role sets, so a change to the table is a visible change here.
	got := map[string][]Role{}
	for _, rt := range h.routes {
		got[rt.pattern] = rt.roles
	}
	want := map[string][]Role{
		"GET /healthz": nil, "GET /readyz": nil, "GET /openapi.json": nil,
		"GET /metrics":                      readers,
		"POST /api/v1/ingest":               {RoleEdge},
		"POST /api/v1/edges/{id}/status":    {RoleEdge},
		"GET /api/v1/sensors":               readers,
		"GET /api/v1/sensors/{id}":          readers,
		"GET /api/v1/sensors/{id}/readings": readers,
		"GET /api/v1/readings/latest":       readers,
		"GET /api/v1/edges":                 readers,
		"GET /api/v1/edges/{id}":            readers,
		"GET /api/v1/rejected":              readers,
		"GET /api/v1/gaps":                  readers,
		"POST /api/v1/edges":                admins,
		"DELETE /api/v1/edges/{id}":         admins,
		"GET /api/v1/apikeys":               admins,
		"POST /api/v1/apikeys":              admins,
		"DELETE /api/v1/apikeys/{id}":       admins,
		"GET /api/v1/alerts":                readers,
		"GET /api/v1/alerts/{id}":           readers,
		"POST /api/v1/alerts/{id}/ack":      operators,
		"POST /api/v1/alerts/{id}/resolve":  operators,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("role table (-want +got):\n%s", diff)
	}
}

func decodeProblem(t *testing.T, w *httptest.ResponseRecorder) Problem {
	t.Helper()
	var p Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", w.Body, err)
	}
	return p
}

func TestIngest(t *testing.T) {
	d := loadDoc(t)
	const pat = "POST /api/v1/ingest"
	f := newFake()
	h := newTestHandler(t, f, func(o *Options) { o.Limits.IngestBody = 4096 })
	good := batchJSON(t, wire.Batch{EdgeID: "e1", BatchID: "b7", Readings: []wire.Reading{{Sensor: "x", Time: 1, Value: 2}, {Sensor: "y", Time: 1, Value: 3}}})
	tests := []struct {
		name, secret, body string
		ingestErr          error
		wantCode           int
		wantType           string
		wantRetry          string
	}{
		{"ok", secEdge, good, nil, 200, "", ""},
		{"garbage is undecodable", secEdge, "\x00\x01garbage", nil, 400, ProblemUndecodable, ""},
		{"empty body is undecodable", secEdge, "", nil, 400, ProblemUndecodable, ""},
		{"other edge's batch", secEdge2, good, nil, 403, ProblemEdgeMismatch, ""},
		{"too large", secEdge, `{"BatchID":"x","EdgeID":"e1","Readings":[` + strings.Repeat(`{"Sensor":"abcdefgh"},`, 300) + `{}]}`, nil, 413, ProblemTooLarge, ""},
		{"overloaded", secEdge, good, errors.New("wrapped: " + ErrOverloaded.Error()), 500, ProblemInternal, ""},
		{"overloaded sentinel", secEdge, good, errors.Join(errors.New("queue full"), ErrOverloaded), 503, ProblemOverloaded, "5"},
		{"overloaded with hint", secEdge, good, &Overload{RetryAfter: 1500 * time.Millisecond, Err: errors.New("slow db")}, 503, ProblemOverloaded, "2"},
		{"invalid batch", secEdge, good, fmt.Errorf("%w: batch id too long", ErrInvalidBatch), 400, ProblemInvalidBatch, ""},
		{"store error", secEdge, good, errors.New("connection refused"), 500, ProblemInternal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.mu.Lock()
			f.ingestErr = tt.ingestErr
			f.mu.Unlock()
			w := request(t, h, "POST", "/api/v1/ingest", tt.secret, tt.body)
			if w.Code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantCode, w.Body)
			}
			checkDocumented(t, d, pat, w.Code)
			if got := w.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetry)
			}
			if tt.wantType != "" {
				if p := decodeProblem(t, w); p.Type != tt.wantType || p.Status != tt.wantCode {
					t.Errorf("problem %+v, want type %s", p, tt.wantType)
				}
				if strings.Contains(w.Body.String(), "connection refused") {
					t.Error("internal error text leaked to the client")
				}
				return
			}
			var resp wire.IngestResponse
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.BatchID != "b7" || resp.Accepted != 2 {
				t.Errorf("response %+v", resp)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ingested) != 1 || f.ingested[0].EdgeID != "e1" {
		t.Errorf("ingested %d batches, want exactly the one good batch", len(f.ingested))
	}
}

func TestStatus(t *testing.T) {
	d := loadDoc(t)
	f := newFake()
	h := newTestHandler(t, f, nil)
	tests := []struct {
		name, target, secret, body string
		want                       int
	}{
		{"own with matching id", "/api/v1/edges/e1/status", secEdge, `{"edge_id":"e1"}`, 204},
		{"own", "/api/v1/edges/e1/status", secEdge, `{"version":"2","backlog_records":7}`, 204},
		{"other edge", "/api/v1/edges/e2/status", secEdge, `{}`, 403},
		{"body names other edge", "/api/v1/edges/e1/status", secEdge, `{"edge_id":"e2"}`, 400},
		{"unknown field from a newer edge", "/api/v1/edges/e1/status", secEdge, `{"version":"2","backlog_records":7,"future_field":"2"}`, 204},
		{"wrong type", "/api/v1/edges/e1/status", secEdge, `{"backlog_records":"many"}`, 400},
		{"trailing data", "/api/v1/edges/e1/status", secEdge, `{} {}`, 400},
		{"not json", "/api/v1/edges/e1/status", secEdge, `hello`, 400},
		{"unknown query", "/api/v1/edges/e1/status?x=1", secEdge, `{}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := request(t, h, "POST", tt.target, tt.secret, tt.body)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			checkDocumented(t, d, "POST /api/v1/edges/{id}/status", w.Code)
		})
	}
	if got := f.statuses["e1"]; got.Version != "2" || got.BacklogRecords != 7 || got.EdgeID != "e1" {
		t.Errorf("stored status %+v", got)
	}
}

func TestRateLimit(t *testing.T) {
	d := loadDoc(t)
	now := t0
	h := newTestHandler(t, newFake(), func(o *Options) {
		o.KeyRate = RateLimit{Rate: 2, Burst: 3}
		o.EdgeRate = RateLimit{Rate: 1, Burst: 1}
		o.Now = func() time.Time { return now }
	})
	codes := func(secret string, n int) []int {
		var out []int
		for range n {
			w := request(t, h, "GET", "/api/v1/edges", secret, "")
			out = append(out, w.Code)
			checkDocumented(t, d, "GET /api/v1/edges", w.Code)
			if w.Code == 429 {
				if ra := w.Header().Get("Retry-After"); ra != "1" {
					t.Errorf("Retry-After %q, want 1", ra)
				}
				if p := decodeProblem(t, w); p.Type != ProblemRateLimited {
					t.Errorf("problem type %q", p.Type)
				}
			}
		}
		return out
	}
	if diff := cmp.Diff([]int{200, 200, 200, 429, 429}, codes(secViewer, 5)); diff != "" {
		t.Errorf("viewer burst (-want +got):\n%s", diff)
	}
	// Buckets are per credential: the admin is unaffected.
	if diff := cmp.Diff([]int{200}, codes(secAdmin, 1)); diff != "" {
		t.Errorf("admin (-want +got):\n%s", diff)
	}
	now = now.Add(time.Second) // refills 2 tokens
	if diff := cmp.Diff([]int{200, 200, 429}, codes(secViewer, 3)); diff != "" {
		t.Errorf("viewer after 1s (-want +got):\n%s", diff)
	}
	// Edges have their own, tighter limit; a 429 on ingest says when to retry.
	body := batchJSON(t, wire.Batch{EdgeID: "e1", BatchID: "b"})
	var got []int
	for range 2 {
		got = append(got, request(t, h, "POST", "/api/v1/ingest", secEdge, body).Code)
	}
	if diff := cmp.Diff([]int{200, 429}, got); diff != "" {
		t.Errorf("edge (-want +got):\n%s", diff)
	}
}

func TestLimiterWait(t *testing.T) {
	now := t0
	l := newLimiter(RateLimit{Rate: 0.5, Burst: 1}, func() time.Time { return now })
	if ok, _ := l.allow("k"); !ok {
		t.Fatal("first call refused")
	}
	ok, wait := l.allow("k")
	if ok || wait != 2*time.Second {
		t.Fatalf("second call: ok=%v wait=%v, want refused for 2s", ok, wait)
	}
	now = now.Add(2 * time.Second)
	if ok, _ := l.allow("k"); !ok {
		t.Fatal("refused after refill")
	}
}

func TestUnavailable(t *testing.T) {
	f := newFake()
	f.readyErr = errors.New("migrations not applied")
	h := newTestHandler(t, f, nil)
	w := request(t, h, "GET", "/readyz", "", "")
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Errorf("readyz: %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := request(t, h, "GET", "/healthz", "", ""); w.Code != 200 {
		t.Errorf("healthz: %d", w.Code)
	}
}

func TestRoutingProblems(t *testing.T) {
	h := newTestHandler(t, newFake(), nil)
	w := request(t, h, "DELETE", "/api/v1/sensors", secAdmin, "")
	if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" || w.Header().Get("Content-Type") != ProblemContentType {
		t.Errorf("DELETE sensors: %d Allow=%q", w.Code, w.Header().Get("Allow"))
	}
	w = request(t, h, "GET", "/api/v2/nothing", secAdmin, "")
	if w.Code != 404 || w.Header().Get("Content-Type") != ProblemContentType {
		t.Errorf("unknown path: %d", w.Code)
	}
	w = request(t, h, "GET", "/api/v1/sensors", "", "")
	if p := decodeProblem(t, w); p.Status != 401 || p.Type != ProblemUnauthorized {
		t.Errorf("no credential: %+v", p)
	}
	for _, hdr := range []string{"Basic abc", "Bearer", "Bearer ", "bearer" + secAdmin} {
		req := httptest.NewRequest("GET", "/api/v1/sensors", nil)
		req.Header.Set("Authorization", hdr)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 401 {
			t.Errorf("Authorization %q: %d, want 401", hdr, rec.Code)
		}
	}
}

func TestCredentialRoutes(t *testing.T) {
	d := loadDoc(t)
	f := newFake()
	h := newTestHandler(t, f, nil)
	tests := []struct {
		name, method, target, pattern, body string
		want                                int
		wantBody                            string
	}{
		{"register", "POST", "/api/v1/edges", "POST /api/v1/edges", `{"name":"plant9"}`, 201, `"token":"token-of-plant9"`},
		{"register again", "POST", "/api/v1/edges", "POST /api/v1/edges", `{"name":"plant9"}`, 409, `already exists`},
		{"bad name", "POST", "/api/v1/edges", "POST /api/v1/edges", `{"name":"a/b"}`, 400, `edge name`},
		{"unknown field", "POST", "/api/v1/edges", "POST /api/v1/edges", `{"name":"x","token":"y"}`, 400, `unknown field`},
		{"revoke", "DELETE", "/api/v1/edges/plant9", "DELETE /api/v1/edges/{id}", "", 204, ""},
		{"revoke twice", "DELETE", "/api/v1/edges/plant9", "DELETE /api/v1/edges/{id}", "", 404, ""},
		{"create key", "POST", "/api/v1/apikeys", "POST /api/v1/apikeys", `{"name":"ops","role":"operator"}`, 201, `"key":"key-of-ops"`},
		{"edge role key", "POST", "/api/v1/apikeys", "POST /api/v1/apikeys", `{"name":"x","role":"edge"}`, 400, `role must be`},
		{"list keys", "GET", "/api/v1/apikeys", "GET /api/v1/apikeys", "", 200, `"name":"ops","role":"operator"`},
		{"revoke key", "DELETE", "/api/v1/apikeys/11", "DELETE /api/v1/apikeys/{id}", "", 204, ""},
		{"revoke bad id", "DELETE", "/api/v1/apikeys/x", "DELETE /api/v1/apikeys/{id}", "", 400, ""},
		{"revoke unknown", "DELETE", "/api/v1/apikeys/999", "DELETE /api/v1/apikeys/{id}", "", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := request(t, h, tt.method, tt.target, secAdmin, tt.body)
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Errorf("%d %s, want %d with %s", w.Code, w.Body, tt.want, tt.wantBody)
			}
			if w.Code == 201 && w.Header().Get("Cache-Control") != "no-store" {
				t.Error("secret response may be cached")
			}
			checkDocumented(t, d, tt.pattern, w.Code)
		})
	}
}
