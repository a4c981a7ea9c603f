package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// fakeBackend implements every consumer interface in memory for unit
// tests of this package. The acceptance tests run against the real store
// (collector/internal/server).
type fakeBackend struct {
	mu         sync.Mutex
	principals map[string]Principal // secret → principal; revoked secrets map to ErrUnauthenticated
	revoked    map[string]bool
	sensors    []Sensor
	points     []Point
	edges      []Edge
	rejected   []RejectedItem
	gaps       []GapRecord
	statuses   map[string]wire.Status
	ingested   []wire.Batch
	ingestErr  error
	readyErr   error
	lastRQ     ReadingsQuery
	keys       []APIKey
}

func (f *fakeBackend) Authenticate(_ context.Context, secret string) (Principal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.revoked[secret] {
		return Principal{}, fmt.Errorf("lookup: %w", ErrUnauthenticated)
	}
	p, ok := f.principals[secret]
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	return p, nil
}

func (f *fakeBackend) Ingest(_ context.Context, edgeID string, b *wire.Batch) (*wire.IngestResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ingestErr != nil {
		return nil, f.ingestErr
	}
	c := *b
	c.Readings = slices.Clone(b.Readings)
	f.ingested = append(f.ingested, c)
	return &wire.IngestResponse{BatchID: b.BatchID, Accepted: len(b.Readings), ServerTime: time.Unix(0, 0).UTC()}, nil
}

func (f *fakeBackend) Ready(context.Context) error { return f.readyErr }

// pageOf pages items by index; the cursor is the decimal offset.
func pageOf[T any](items []T, p Page) ([]T, string, error) {
	off := 0
	if p.Cursor != "" {
		n, err := strconv.Atoi(p.Cursor)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", fmt.Errorf("%w: malformed cursor", ErrInvalidQuery)
		}
		off = n
	}
	end := min(off+p.Limit, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return slices.Clone(items[off:end]), next, nil
}

func (f *fakeBackend) ListSensors(_ context.Context, flt SensorFilter, p Page) ([]Sensor, string, error) {
	var out []Sensor
	for _, s := range f.sensors {
		if (flt.Site == "" || s.Site == flt.Site) && (flt.Asset == "" || s.Asset == flt.Asset) &&
			(flt.Type == "" || s.Type == flt.Type) && (flt.EdgeID == "" || s.EdgeID == flt.EdgeID) {
			out = append(out, s)
		}
	}
	return pageOf(out, p)
}

func (f *fakeBackend) GetSensor(_ context.Context, id string) (Sensor, error) {
	for _, s := range f.sensors {
		if s.ID == id {
			return s, nil
		}
	}
	return Sensor{}, ErrNotFound
}

func (f *fakeBackend) Readings(_ context.Context, q ReadingsQuery, p Page) ([]Point, string, error) {
	f.mu.Lock()
	f.lastRQ = q
	f.mu.Unlock()
	var out []Point
	for _, pt := range f.points {
		if pt.Sensor == q.Sensor && !pt.Time.Before(q.From) && pt.Time.Before(q.To) {
			out = append(out, pt)
		}
	}
	return pageOf(out, p)
}

func (f *fakeBackend) LatestReadings(_ context.Context, sensors []string) ([]Point, error) {
	var out []Point
	for _, s := range sensors {
		var last *Point
		for i, pt := range f.points {
			if pt.Sensor == s && (last == nil || pt.Time.After(last.Time)) {
				last = &f.points[i]
			}
		}
		if last != nil {
			out = append(out, *last)
		}
	}
	return out, nil
}

func (f *fakeBackend) ListEdges(_ context.Context, p Page) ([]Edge, string, error) {
	return pageOf(f.edges, p)
}

func (f *fakeBackend) GetEdge(_ context.Context, id string) (Edge, error) {
	for _, e := range f.edges {
		if e.ID == id {
			return e, nil
		}
	}
	return Edge{}, ErrNotFound
}

func (f *fakeBackend) SaveStatus(_ context.Context, edgeID string, st wire.Status, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.GetEdge(context.Background(), edgeID); err != nil {
		return err
	}
	f.statuses[edgeID] = st
	return nil
}

func (f *fakeBackend) ListRejected(_ context.Context, flt RejectedFilter, p Page) ([]RejectedItem, string, error) {
	var out []RejectedItem
	for _, r := range f.rejected {
		if flt.EdgeID == "" || r.EdgeID == flt.EdgeID {
			out = append(out, r)
		}
	}
	return pageOf(out, p)
}

func (f *fakeBackend) ListGaps(_ context.Context, flt GapFilter, p Page) ([]GapRecord, string, error) {
	var out []GapRecord
	for _, g := range f.gaps {
		if flt.Sensor == "" || g.Sensor == flt.Sensor {
			out = append(out, g)
		}
	}
	return pageOf(out, p)
}

func (f *fakeBackend) RegisterEdge(_ context.Context, name string) (Edge, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "" || strings.Contains(name, "/") {
		return Edge{}, "", fmt.Errorf("%w: edge name %q", ErrInvalidArgument, name)
	}
	for _, e := range f.edges {
		if e.ID == name {
			return Edge{}, "", fmt.Errorf("edge %q: %w", name, ErrConflict)
		}
	}
	e := Edge{ID: name, Name: name, CreatedAt: t0}
	f.edges = append(f.edges, e)
	return e, "token-of-" + name, nil
}

func (f *fakeBackend) RevokeEdge(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range f.edges {
		if e.ID == id && e.RevokedAt == nil {
			f.edges[i].RevokedAt = &t0
			return nil
		}
	}
	return ErrNotFound
}

func (f *fakeBackend) CreateAPIKey(_ context.Context, name string, role Role) (APIKey, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := APIKey{ID: int64(len(f.keys) + 10), Name: name, Role: role, CreatedAt: t0}
	f.keys = append(f.keys, k)
	return k, "key-of-" + name, nil
}

func (f *fakeBackend) ListAPIKeys(context.Context) ([]APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.keys), nil
}

func (f *fakeBackend) RevokeAPIKey(_ context.Context, id int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, k := range f.keys {
		if k.ID == id && k.RevokedAt == nil {
			f.keys[i].RevokedAt = &t0
			return nil
		}
	}
	return ErrNotFound
}

// jsonDecode stands in for wire.DecodeBatch in unit tests: the batch as
// JSON. It fails on anything else, like the real decoder on garbage.
func jsonDecode(body []byte, b *wire.Batch, _ int) error {
	if err := json.Unmarshal(body, b); err != nil {
		return fmt.Errorf("decode batch: %w", err)
	}
	if b.BatchID == "" {
		return errors.New("decode batch: no batch id")
	}
	return nil
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Secrets of the test principals.
const (
	secEdge     = "edge-secret"
	secEdge2    = "edge2-secret"
	secViewer   = "viewer-secret"
	secOperator = "operator-secret"
	secAdmin    = "admin-secret"
	secRevoked  = "revoked-secret"
)

func newFake() *fakeBackend {
	f64 := func(v float64) *float64 { return &v }
	tp := func(t time.Time) *time.Time { return &t }
	f := &fakeBackend{
		principals: map[string]Principal{
			secEdge:     {Kind: "edge", ID: 1, Name: "e1", Role: RoleEdge, EdgeID: "e1"},
			secEdge2:    {Kind: "edge", ID: 2, Name: "e2", Role: RoleEdge, EdgeID: "e2"},
			secViewer:   {Kind: "apikey", ID: 1, Name: "grafana", Role: RoleViewer},
			secOperator: {Kind: "apikey", ID: 2, Name: "oncall", Role: RoleOperator},
			secAdmin:    {Kind: "apikey", ID: 3, Name: "root", Role: RoleAdmin},
		},
		revoked:  map[string]bool{secRevoked: true},
		statuses: map[string]wire.Status{},
		edges: []Edge{
			{ID: "e1", Name: "e1", CreatedAt: t0},
			{ID: "e2", Name: "e2", CreatedAt: t0},
		},
		keys:     []APIKey{{ID: 1, Name: "grafana", Role: RoleViewer, CreatedAt: t0}},
		rejected: []RejectedItem{{ID: 1, EdgeID: "e1", Item: "reading", Index: 3, Sensor: "s/a", Raw: json.RawMessage(`{"value":"NaN"}`), Reason: "not_finite", Received: t0}},
		gaps:     []GapRecord{{ID: 1, EdgeID: "e1", Sensor: "s/a", From: t0, To: t0.Add(time.Minute), Count: 60, Reason: "buffer_budget", Received: t0}},
	}
	for i, site := range []string{"s1", "s1", "s2"} {
		id := fmt.Sprintf("%s/line/pump%d/vib", site, i)
		f.sensors = append(f.sensors, Sensor{ID: id, EdgeID: "e1", Site: site, Line: "line", Asset: fmt.Sprintf("pump%d", i), Name: "vib", Type: "vib",
			CreatedAt: t0, LastValue: f64(float64(i)), LastTime: tp(t0)})
		for k := range 5 {
			f.points = append(f.points, Point{Sensor: id, Time: t0.Add(time.Duration(k-5) * time.Minute), Value: float64(10*i + k), Quality: "good"})
		}
	}
	slices.SortFunc(f.sensors, func(a, b Sensor) int { return cmp.Compare(a.ID, b.ID) })
	return f
}

func newTestHandler(t testing.TB, f *fakeBackend, mod func(*Options)) *Handler {
	t.Helper()
	o := Options{Auth: f, Ingest: f, Ready: f, Sensors: f, Readings: f, Edges: f, Losses: f, Creds: f, Decode: jsonDecode,
		Alerts: newFakeAlerts(),
		Now:    func() time.Time { return t0 }}
	if mod != nil {
		mod(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
