package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var readingsCases = []struct {
	name    string
	raw     string
	want    ReadingsQuery
	wantPg  Page
	badArgs []string // names in invalid_params, in order
}{
	{name: "defaults", raw: "", want: ReadingsQuery{From: t0.Add(-time.Hour), To: t0}, wantPg: Page{Limit: 100}},
	{name: "raw range", raw: "from=2026-03-01T10:00:00Z&to=2026-03-01T11:00:00%2B01:00&limit=5&cursor=abc",
		want: ReadingsQuery{From: t0.Add(-2 * time.Hour), To: t0.Add(-2 * time.Hour)}, badArgs: []string{"from"}},
	{name: "buckets", raw: "from=2026-03-01T11:00:00Z&step=1m&agg=max",
		want: ReadingsQuery{From: t0.Add(-time.Hour), To: t0, Step: time.Minute, Agg: "max"}, wantPg: Page{Limit: 100}},
	{name: "step defaults agg to avg", raw: "step=5m",
		want: ReadingsQuery{From: t0.Add(-time.Hour), To: t0, Step: 5 * time.Minute, Agg: "avg"}, wantPg: Page{Limit: 100}},
	{name: "paging", raw: "limit=7&cursor=xyz", want: ReadingsQuery{From: t0.Add(-time.Hour), To: t0}, wantPg: Page{Cursor: "xyz", Limit: 7}},
	{name: "agg without step", raw: "agg=min", badArgs: []string{"agg"}},
	{name: "unknown agg", raw: "step=1m&agg=median", badArgs: []string{"agg"}},
	{name: "tiny step", raw: "step=10ms", badArgs: []string{"step"}},
	{name: "negative step", raw: "step=-1m", badArgs: []string{"step"}},
	{name: "too many buckets", raw: "from=2026-01-01T00:00:00Z&step=1s", badArgs: []string{"step"}},
	{name: "bad time", raw: "from=yesterday&to=2026-13-01T00:00:00Z", badArgs: []string{"to", "from"}},
	{name: "repeated", raw: "from=2026-03-01T11:00:00Z&from=2026-03-01T10:00:00Z", badArgs: []string{"from"}},
	{name: "unknown param", raw: "form=2026-03-01T11:00:00Z&zzz=1", badArgs: []string{"form", "zzz"}},
	{name: "limit out of range", raw: "limit=0", badArgs: []string{"limit"}},
	{name: "limit too large", raw: "limit=100000", badArgs: []string{"limit"}},
	{name: "limit not int", raw: "limit=ten", badArgs: []string{"limit"}},
	{name: "empty value", raw: "cursor=", badArgs: []string{"cursor"}},
	{name: "bad escape", raw: "from=%zz", badArgs: []string{"(query)"}},
	{name: "long value", raw: "cursor=" + strings.Repeat("a", 2000), badArgs: []string{"cursor"}},
}

func TestParseReadingsQuery(t *testing.T) {
	for _, tt := range readingsCases {
		t.Run(tt.name, func(t *testing.T) {
			rq, pg, p := parseReadingsQuery(tt.raw, t0, DefaultLimits())
			if len(tt.badArgs) > 0 {
				if p == nil {
					t.Fatalf("no problem for %q", tt.raw)
				}
				var names []string
				for _, ip := range p.InvalidParams {
					names = append(names, ip.Name)
				}
				if diff := cmp.Diff(tt.badArgs, names); diff != "" {
					t.Errorf("invalid params (-want +got):\n%s\ndetail: %s", diff, p.Detail)
				}
				if p.Status != 400 || p.Detail == "" {
					t.Errorf("problem %+v", p)
				}
				return
			}
			if p != nil {
				t.Fatalf("problem: %s", p.Detail)
			}
			if diff := cmp.Diff(tt.want, rq); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPg, pg); diff != "" {
				t.Errorf("page (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseReadingsQuery: any query string either gives a 400 naming the
// bad parameters or a query that satisfies every documented limit.
func FuzzParseReadingsQuery(f *testing.F) {
	for _, tt := range readingsCases {
		f.Add(tt.raw)
	}
	l := DefaultLimits()
	f.Fuzz(func(t *testing.T, raw string) {
		rq, pg, p := parseReadingsQuery(raw, t0, l)
		if p != nil {
			if p.Status != 400 || len(p.InvalidParams) == 0 {
				t.Fatalf("problem without params: %+v", p)
			}
			if _, err := json.Marshal(p); err != nil {
				t.Fatal(err)
			}
			return
		}
		if !rq.From.Before(rq.To) {
			t.Fatalf("from %v not before to %v", rq.From, rq.To)
		}
		if pg.Limit < 1 || pg.Limit > l.PageMax {
			t.Fatalf("limit %d", pg.Limit)
		}
		if rq.Step != 0 {
			if rq.Step < time.Second || rq.Agg == "" {
				t.Fatalf("step %v agg %q", rq.Step, rq.Agg)
			}
			if n := rq.To.Sub(rq.From) / rq.Step; n > time.Duration(l.MaxBuckets) {
				t.Fatalf("%d buckets", n)
			}
		} else if rq.Agg != "" {
			t.Fatalf("agg %q without step", rq.Agg)
		}
	})
}

// FuzzParseListQuery covers the parser of the listing endpoints.
func FuzzParseListQuery(f *testing.F) {
	for _, s := range []string{"", "edge=e1&limit=5", "from=2026-01-01T00:00:00Z&to=2025-01-01T00:00:00Z", "reason=x&reason=y", "%", "a=b;c"} {
		f.Add(s)
	}
	l := DefaultLimits()
	f.Fuzz(func(t *testing.T, raw string) {
		q := parseQuery(raw, lossParams...)
		_, _, _, from, to := lossFilter(q)
		pg := q.page(l)
		if p := q.problem(); p != nil {
			if len(p.InvalidParams) == 0 {
				t.Fatal("problem without params")
			}
			return
		}
		if pg.Limit < 1 || pg.Limit > l.PageMax {
			t.Fatalf("limit %d", pg.Limit)
		}
		if !from.IsZero() && !to.IsZero() && !from.Before(to) {
			t.Fatalf("from %v to %v accepted", from, to)
		}
	})
}

func getJSON(t *testing.T, h *Handler, target string, v any) {
	t.Helper()
	w := request(t, h, "GET", target, secViewer, "")
	if w.Code != 200 {
		t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatal(err)
	}
}

func TestQueryEndpoints(t *testing.T) {
	f := newFake()
	h := newTestHandler(t, f, nil)

	// Paging through sensors with the next link.
	var ids []string
	next := "/api/v1/sensors?limit=2"
	pages := 0
	for next != "" {
		var l List[Sensor]
		getJSON(t, h, next, &l)
		for _, s := range l.Items {
			ids = append(ids, s.ID)
		}
		next = l.Next
		if pages++; pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	want := []string{"s1/line/pump0/vib", "s1/line/pump1/vib", "s2/line/pump2/vib"}
	if diff := cmp.Diff(want, ids); diff != "" || pages != 2 {
		t.Errorf("paged ids over %d pages (-want +got):\n%s", pages, diff)
	}
	// The next link keeps filters.
	var l List[Sensor]
	getJSON(t, h, "/api/v1/sensors?site=s1&limit=1", &l)
	if l.Next != "/api/v1/sensors?cursor=1&limit=1&site=s1" {
		t.Errorf("next %q", l.Next)
	}
	w := request(t, h, "GET", "/api/v1/sensors?site=s1&limit=1", secViewer, "")
	if got := w.Header().Get("Link"); got != `</api/v1/sensors?cursor=1&limit=1&site=s1>; rel="next"` {
		t.Errorf("Link %q", got)
	}
	// A bad cursor is the client's fault.
	if w := request(t, h, "GET", "/api/v1/sensors?cursor=zz", secViewer, ""); w.Code != 400 {
		t.Errorf("bad cursor: %d", w.Code)
	}

	// One sensor, by escaped id.
	var s Sensor
	getJSON(t, h, "/api/v1/sensors/s2%2Fline%2Fpump2%2Fvib", &s)
	if s.ID != "s2/line/pump2/vib" || s.LastValue == nil || *s.LastValue != 2 {
		t.Errorf("sensor %+v", s)
	}
	if w := request(t, h, "GET", "/api/v1/sensors/nope", secViewer, ""); w.Code != 404 {
		t.Errorf("unknown sensor: %d", w.Code)
	}

	// Readings of one sensor, the last 3 minutes.
	var pts List[Point]
	getJSON(t, h, "/api/v1/sensors/s1%2Fline%2Fpump1%2Fvib/readings?from=2026-03-01T11:57:00Z", &pts)
	var vals []float64
	for _, p := range pts.Items {
		vals = append(vals, p.Value)
	}
	if diff := cmp.Diff([]float64{12, 13, 14}, vals); diff != "" {
		t.Errorf("readings (-want +got):\n%s", diff)
	}
	getJSON(t, h, "/api/v1/sensors/s1%2Fline%2Fpump1%2Fvib/readings?step=1h&agg=count", &pts)
	if diff := cmp.Diff(ReadingsQuery{Sensor: "s1/line/pump1/vib", From: t0.Add(-time.Hour), To: t0, Step: time.Hour, Agg: "count"}, f.lastRQ); diff != "" {
		t.Errorf("query passed to the store (-want +got):\n%s", diff)
	}
	if w := request(t, h, "GET", "/api/v1/sensors/nope/readings", secViewer, ""); w.Code != 404 {
		t.Errorf("readings of unknown sensor: %d", w.Code)
	}

	// Latest of several sensors.
	getJSON(t, h, "/api/v1/readings/latest?sensor=s1%2Fline%2Fpump0%2Fvib&sensor=s2%2Fline%2Fpump2%2Fvib&sensor=unknown", &pts)
	vals = nil
	for _, p := range pts.Items {
		vals = append(vals, p.Value)
	}
	if diff := cmp.Diff([]float64{4, 24}, vals); diff != "" {
		t.Errorf("latest (-want +got):\n%s", diff)
	}
	if w := request(t, h, "GET", "/api/v1/readings/latest", secViewer, ""); w.Code != 400 {
		t.Errorf("latest without sensor: %d", w.Code)
	}

	var e Edge
	getJSON(t, h, "/api/v1/edges/e2", &e)
	if e.ID != "e2" || e.Status != nil {
		t.Errorf("edge %+v", e)
	}
	var rej List[RejectedItem]
	getJSON(t, h, "/api/v1/rejected?edge=e1", &rej)
	if len(rej.Items) != 1 || string(rej.Items[0].Raw) != `{"value":"NaN"}` || rej.Items[0].Reason != "not_finite" {
		t.Errorf("rejected %+v", rej)
	}
	var gaps List[GapRecord]
	getJSON(t, h, "/api/v1/gaps?sensor=other", &gaps)
	if gaps.Items == nil || len(gaps.Items) != 0 {
		t.Errorf("gaps for another sensor: %+v (want an empty, non-null list)", gaps)
	}
	if w := request(t, h, "GET", "/api/v1/gaps?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", secViewer, ""); w.Code != 400 {
		t.Errorf("gaps from after to: %d", w.Code)
	}
}
