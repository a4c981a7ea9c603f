package server

import (
	"context"
	"errors"
	"time"

	"github.com/smartmaint/smartmaint/collector/internal/api"
	"github.com/smartmaint/smartmaint/collector/internal/ingest"
	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// storeAPI adapts *store.DB to the api package's consumer interfaces:
// it maps store structs to the API's JSON view types and store sentinel
// errors to the API's.
type storeAPI struct{ db *store.DB }

// mapped keeps the original error (text and chain) and adds an api
// sentinel for errors.Is.
type mapped struct {
	sentinel error
	err      error
}

func (m *mapped) Error() string        { return m.err.Error() }
func (m *mapped) Unwrap() []error      { return []error{m.sentinel, m.err} }
func (m *mapped) Is(target error) bool { return target == m.sentinel }

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return &mapped{api.ErrNotFound, err}
	case errors.Is(err, store.ErrUnauthenticated):
		return &mapped{api.ErrUnauthenticated, err}
	case errors.Is(err, store.ErrInvalid):
		return &mapped{api.ErrInvalidQuery, err}
	}
	return err
}

// mapCredErr maps errors of credential management: there, invalid
// arguments are body fields, and a taken name is a conflict.
func mapCredErr(err error) error {
	switch {
	case errors.Is(err, store.ErrInvalid):
		return &mapped{api.ErrInvalidArgument, err}
	case errors.Is(err, store.ErrConflict):
		return &mapped{api.ErrConflict, err}
	}
	return mapErr(err)
}

func (s storeAPI) RegisterEdge(ctx context.Context, name string) (api.Edge, string, error) {
	e, token, err := s.db.RegisterEdge(ctx, name)
	if err != nil {
		return api.Edge{}, "", mapCredErr(err)
	}
	return edgeView(e), token, nil
}

func (s storeAPI) RevokeEdge(ctx context.Context, id string) error {
	return mapCredErr(s.db.RevokeEdge(ctx, id))
}

func keyView(k store.APIKey) api.APIKey {
	return api.APIKey{ID: k.ID, Name: k.Name, Role: api.Role(k.Role), CreatedAt: k.CreatedAt.UTC(), RevokedAt: timePtr(k.RevokedAt)}
}

func (s storeAPI) CreateAPIKey(ctx context.Context, name string, role api.Role) (api.APIKey, string, error) {
	k, key, err := s.db.CreateAPIKey(ctx, name, store.Role(role))
	if err != nil {
		return api.APIKey{}, "", mapCredErr(err)
	}
	return keyView(k), key, nil
}

func (s storeAPI) ListAPIKeys(ctx context.Context) ([]api.APIKey, error) {
	ks, err := s.db.ListAPIKeys(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]api.APIKey, len(ks))
	for i, k := range ks {
		out[i] = keyView(k)
	}
	return out, nil
}

func (s storeAPI) RevokeAPIKey(ctx context.Context, id int64) error {
	return mapCredErr(s.db.RevokeAPIKey(ctx, id))
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (s storeAPI) Authenticate(ctx context.Context, secret string) (api.Principal, error) {
	p, err := s.db.Authenticate(ctx, secret)
	if err != nil {
		return api.Principal{}, mapErr(err)
	}
	return api.Principal{Kind: p.Kind, ID: p.ID, Name: p.Name, Role: api.Role(p.Role), EdgeID: p.EdgeID}, nil
}

func (s storeAPI) Ready(ctx context.Context) error { return s.db.Ready(ctx) }

func sensorView(x store.Sensor) api.Sensor {
	return api.Sensor{
		ID: x.ID, Site: x.Site, Line: x.Line, Asset: x.Asset, Name: x.Name, Type: x.Type, Unit: x.Unit,
		RangeMin: x.RangeMin, RangeMax: x.RangeMax, RangePolicy: x.RangePolicy, EdgeID: x.EdgeID,
		AutoRegistered: x.AutoRegistered, CreatedAt: x.CreatedAt.UTC(), LastValue: x.LastValue, LastTime: timePtr(x.LastTime),
	}
}

func (s storeAPI) ListSensors(ctx context.Context, f api.SensorFilter, p api.Page) ([]api.Sensor, string, error) {
	xs, next, err := s.db.ListSensors(ctx, store.SensorFilter{Site: f.Site, Asset: f.Asset, Type: f.Type, EdgeID: f.EdgeID},
		store.Page{Cursor: p.Cursor, Limit: p.Limit})
	if err != nil {
		return nil, "", mapErr(err)
	}
	out := make([]api.Sensor, len(xs))
	for i, x := range xs {
		out[i] = sensorView(x)
	}
	return out, next, nil
}

func (s storeAPI) GetSensor(ctx context.Context, id string) (api.Sensor, error) {
	x, err := s.db.GetSensor(ctx, id)
	if err != nil {
		return api.Sensor{}, mapErr(err)
	}
	return sensorView(x), nil
}

// flagNames are the names of reading flags in the API, bit by bit.
var flagNames = []struct {
	f    wire.Flags
	name string
}{
	{wire.FlagAnomaly, "anomaly"}, {wire.FlagLimit, "limit"}, {wire.FlagClockSkewed, "clock_skewed"},
	{wire.FlagReplayed, "replayed"}, {wire.FlagNoTimestamp, "no_timestamp"}, {store.FlagOutOfRange, "out_of_range"},
}

func pointView(x store.Point, bucket bool) api.Point {
	p := api.Point{Sensor: x.Sensor, Time: x.Time.UTC(), Value: x.Value}
	if bucket {
		p.Count = x.Count
		return p
	}
	p.Quality, p.Score, p.Model = x.Quality.String(), x.Score, x.Model
	for _, fl := range flagNames {
		if x.Flags&fl.f != 0 {
			p.Flags = append(p.Flags, fl.name)
		}
	}
	return p
}

func (s storeAPI) Readings(ctx context.Context, q api.ReadingsQuery, p api.Page) ([]api.Point, string, error) {
	xs, next, err := s.db.Readings(ctx, store.ReadingsQuery{Sensor: q.Sensor, From: q.From, To: q.To, Step: q.Step, Agg: q.Agg},
		store.Page{Cursor: p.Cursor, Limit: p.Limit})
	if err != nil {
		return nil, "", mapErr(err)
	}
	out := make([]api.Point, len(xs))
	for i, x := range xs {
		out[i] = pointView(x, q.Step > 0)
	}
	return out, next, nil
}

func (s storeAPI) LatestReadings(ctx context.Context, sensors []string) ([]api.Point, error) {
	xs, err := s.db.LatestReadings(ctx, sensors)
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]api.Point, len(xs))
	for i, x := range xs {
		out[i] = pointView(x, false)
	}
	return out, nil
}

func edgeView(x store.Edge) api.Edge {
	return api.Edge{
		ID: x.ID, Name: x.Name, CreatedAt: x.CreatedAt.UTC(), RevokedAt: timePtr(x.RevokedAt), LastSeen: timePtr(x.LastSeen),
		Version: x.Version, BacklogRecords: x.BacklogRecords, BacklogBytes: x.BacklogBytes, OldestAgeSeconds: x.OldestAgeSeconds,
		RunwayHours: x.RunwayHours, ClockOffsetMs: x.ClockOffsetMs, StatusReceived: timePtr(x.StatusAt), Status: x.Status,
	}
}

func (s storeAPI) ListEdges(ctx context.Context, p api.Page) ([]api.Edge, string, error) {
	xs, next, err := s.db.ListEdges(ctx, store.Page{Cursor: p.Cursor, Limit: p.Limit})
	if err != nil {
		return nil, "", mapErr(err)
	}
	out := make([]api.Edge, len(xs))
	for i, x := range xs {
		out[i] = edgeView(x)
	}
	return out, next, nil
}

func (s storeAPI) GetEdge(ctx context.Context, id string) (api.Edge, error) {
	x, err := s.db.GetEdge(ctx, id)
	if err != nil {
		return api.Edge{}, mapErr(err)
	}
	return edgeView(x), nil
}

func (s storeAPI) SaveStatus(ctx context.Context, edgeID string, st wire.Status, received time.Time) error {
	return mapErr(s.db.SaveStatus(ctx, edgeID, st, received))
}

func (s storeAPI) ListRejected(ctx context.Context, f api.RejectedFilter, p api.Page) ([]api.RejectedItem, string, error) {
	xs, next, err := s.db.ListRejected(ctx, store.RejectedFilter{EdgeID: f.EdgeID, Sensor: f.Sensor, Reason: f.Reason, Since: f.From, Until: f.To},
		store.Page{Cursor: p.Cursor, Limit: p.Limit})
	if err != nil {
		return nil, "", mapErr(err)
	}
	out := make([]api.RejectedItem, len(xs))
	for i, x := range xs {
		out[i] = api.RejectedItem{ID: x.ID, EdgeID: x.EdgeID, BatchID: x.BatchID, Item: x.Item, Index: x.Index,
			Sensor: x.Sensor, Reason: x.Reason, Raw: x.Raw, Received: x.ReceivedAt.UTC()}
	}
	return out, next, nil
}

func (s storeAPI) ListGaps(ctx context.Context, f api.GapFilter, p api.Page) ([]api.GapRecord, string, error) {
	xs, next, err := s.db.ListGaps(ctx, store.GapFilter{EdgeID: f.EdgeID, Sensor: f.Sensor, Reason: f.Reason, Since: f.From, Until: f.To},
		store.Page{Cursor: p.Cursor, Limit: p.Limit})
	if err != nil {
		return nil, "", mapErr(err)
	}
	out := make([]api.GapRecord, len(xs))
	for i, x := range xs {
		out[i] = api.GapRecord{ID: x.ID, EdgeID: x.EdgeID, BatchID: x.BatchID, Sensor: x.Sensor, From: x.From.UTC(), To: x.To.UTC(),
			Count: x.Count, Reason: x.Reason, Received: x.ReceivedAt.UTC()}
	}
	return out, next, nil
}

// ingestAPI adapts *ingest.Service to api.Ingester.
type ingestAPI struct{ svc *ingest.Service }

func (i ingestAPI) Ingest(ctx context.Context, edgeID string, b *wire.Batch) (*wire.IngestResponse, error) {
	resp, err := i.svc.Ingest(ctx, edgeID, b)
	switch {
	case err == nil:
		return resp, nil
	case errors.Is(err, ingest.ErrOverloaded):
		return nil, &api.Overload{RetryAfter: ingest.RetryAfter(err), Err: err}
	case errors.Is(err, ingest.ErrInvalidBatch):
		return nil, &mapped{api.ErrInvalidBatch, err}
	}
	return nil, err
}
