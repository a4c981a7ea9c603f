// Package api is the collector's HTTP interface: batch ingest from edges,
// status reports, the read-only data API for operations, health probes and
// the OpenAPI document that describes all of it.
//
// Every route except /healthz, /readyz and /openapi.json requires an
// `Authorization: Bearer` credential. What a credential may do is decided
// by its role through one table (routes.go), so adding a route and its
// permission is one line. Errors are RFC 9457 problem documents
// (application/problem+json).
//
// The package owns the JSON shape of every response. It does not import
// the store: it declares the small interfaces it consumes (below) with its
// own view types, and the composition root adapts the store to them.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Sentinel errors that implementations of the consumer interfaces return
// (possibly wrapped) so the API can answer with the right status.
var (
	// ErrNotFound: the requested object does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrUnauthenticated: the credential is unknown or revoked (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrOverloaded: ingest cannot take more work now (503 + Retry-After).
	ErrOverloaded = errors.New("overloaded")
	// ErrInvalidQuery: a query argument, such as a paging cursor, is
	// malformed (400); the error text says which and is shown to the client.
	ErrInvalidQuery = errors.New("invalid query")
	// ErrInvalidArgument: a request body field is malformed (400); the
	// error text says which and is shown to the client.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrConflict: the object already exists (409).
	ErrConflict = errors.New("already exists")
	// ErrInvalidBatch: the batch as a whole cannot be accepted, for example
	// it has no batch id (400; the edge must not retry it).
	ErrInvalidBatch = errors.New("invalid batch")
)

// Overload is an error wrapping ErrOverloaded with a retry hint.
type Overload struct {
	// RetryAfter is when the client should retry; 0 means the default.
	RetryAfter time.Duration
	Err        error
}

func (e *Overload) Error() string { return "overloaded: " + e.Err.Error() }

// Is makes errors.Is(err, ErrOverloaded) true.
func (e *Overload) Is(target error) bool { return target == ErrOverloaded }

// Unwrap returns the cause.
func (e *Overload) Unwrap() error { return e.Err }

// Role is what a credential may do.
type Role string

// Roles, from edge (ingest only) to admin (everything).
const (
	RoleEdge     Role = "edge"
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// Principal is the authenticated identity behind a request.
type Principal struct {
	// Kind is "edge" or "apikey".
	Kind string
	ID   int64
	Name string
	Role Role
	// EdgeID is the edge's id when Kind is "edge".
	EdgeID string
}

// key identifies the principal for rate limiting.
func (p Principal) key() string { return p.Kind + ":" + p.Name + ":" + itoa(p.ID) }

// Authenticator resolves a bearer secret to a principal. It returns an
// error wrapping ErrUnauthenticated for unknown or revoked secrets; any
// other error is treated as temporary (503). Safe for concurrent use.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (Principal, error)
}

// Ingester stores one decoded batch from an authenticated edge and returns
// the answer to send; it returns only after the batch is committed. It
// returns an error wrapping ErrOverloaded (optionally an *Overload with a
// retry hint) when it cannot take the batch now, and one wrapping
// ErrInvalidBatch when the batch can never be accepted. Safe for
// concurrent use.
type Ingester interface {
	Ingest(ctx context.Context, edgeID string, b *wire.Batch) (*wire.IngestResponse, error)
}

// Readiness reports whether the collector can serve (database reachable,
// migrations applied).
type Readiness interface {
	Ready(ctx context.Context) error
}

// Page asks for one page of a listing. Cursor is opaque to the API: it is
// whatever the store returned as the next cursor; "" is the first page.
type Page struct {
	Cursor string
	Limit  int
}

// SensorFilter narrows a sensor listing; empty fields match everything.
type SensorFilter struct {
	Site, Asset, Type, EdgeID string
}

// ReadingsQuery selects readings of one sensor in [From, To). Step 0 means
// raw readings; otherwise readings are aggregated into buckets of Step
// with Agg (avg, min, max, count, last).
type ReadingsQuery struct {
	Sensor   string
	From, To time.Time
	Step     time.Duration
	Agg      string
}

// RejectedFilter narrows the dead-letter listing; zero fields match all.
type RejectedFilter struct {
	EdgeID, Sensor, Reason string
	From, To               time.Time
}

// GapFilter narrows the gap listing; zero fields match all.
type GapFilter struct {
	EdgeID, Sensor, Reason string
	From, To               time.Time
}

// Sensors reads the sensor registry. Safe for concurrent use.
type Sensors interface {
	ListSensors(ctx context.Context, f SensorFilter, p Page) ([]Sensor, string, error)
	GetSensor(ctx context.Context, id string) (Sensor, error)
}

// Readings reads stored readings. Safe for concurrent use.
type Readings interface {
	Readings(ctx context.Context, q ReadingsQuery, p Page) ([]Point, string, error)
	LatestReadings(ctx context.Context, sensors []string) ([]Point, error)
}

// Edges reads the fleet and records edge status reports. Safe for
// concurrent use.
type Edges interface {
	ListEdges(ctx context.Context, p Page) ([]Edge, string, error)
	GetEdge(ctx context.Context, id string) (Edge, error)
	SaveStatus(ctx context.Context, edgeID string, st wire.Status, received time.Time) error
}

// Losses reads the dead-letter table and gap records. Safe for concurrent
// use.
type Losses interface {
	ListRejected(ctx context.Context, f RejectedFilter, p Page) ([]RejectedItem, string, error)
	ListGaps(ctx context.Context, f GapFilter, p Page) ([]GapRecord, string, error)
}

// Credentials manages edge tokens and API keys (admin routes). Secrets
// are returned once, at creation, and stored only as hashes. Errors wrap
// ErrInvalidArgument (bad name or role), ErrConflict (the name is taken)
// or ErrNotFound. Safe for concurrent use.
type Credentials interface {
	RegisterEdge(ctx context.Context, name string) (Edge, string, error)
	RevokeEdge(ctx context.Context, id string) error
	CreateAPIKey(ctx context.Context, name string, role Role) (APIKey, string, error)
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	RevokeAPIKey(ctx context.Context, id int64) error
}

// APIKey is an API key's metadata; the key itself is shown only when it is
// created.
type APIKey struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Role      Role       `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Sensor is one registered sensor with its last reading.
type Sensor struct {
	ID    string `json:"id"`
	Site  string `json:"site"`
	Line  string `json:"line"`
	Asset string `json:"asset"`
	Name  string `json:"name"`
	Type  string `json:"type,omitempty"`
	Unit  string `json:"unit,omitempty"`
	// RangeMin and RangeMax bound the physical range (absent: open).
	RangeMin *float64 `json:"range_min,omitempty"`
	RangeMax *float64 `json:"range_max,omitempty"`
	// RangePolicy is flag or reject: what happens to values outside it.
	RangePolicy    string     `json:"range_policy,omitempty"`
	EdgeID         string     `json:"edge_id,omitempty"`
	AutoRegistered bool       `json:"auto_registered"`
	CreatedAt      time.Time  `json:"created_at"`
	LastValue      *float64   `json:"last_value"`
	LastTime       *time.Time `json:"last_time"`
}

// Point is one raw reading or one aggregated bucket. For buckets Time is
// the bucket start and Count the number of readings in it; raw readings
// carry quality, flags, score and model instead.
type Point struct {
	Sensor  string    `json:"sensor"`
	Time    time.Time `json:"time"`
	Value   float64   `json:"value"`
	Count   int64     `json:"count,omitempty"`
	Quality string    `json:"quality,omitempty"`
	Flags   []string  `json:"flags,omitempty"`
	Score   float32   `json:"score,omitempty"`
	Model   string    `json:"model,omitempty"`
}

// Edge is one registered edge with what it last reported.
type Edge struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	LastSeen  *time.Time `json:"last_seen"`
	Version   string     `json:"version,omitempty"`
	// Figures of the last status report, for display and sorting.
	BacklogRecords   int64   `json:"backlog_records"`
	BacklogBytes     int64   `json:"backlog_bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	RunwayHours      float64 `json:"runway_hours"`
	ClockOffsetMs    float64 `json:"clock_offset_ms"`
	// StatusReceived is when Status arrived; both are absent when the edge
	// never reported.
	StatusReceived *time.Time   `json:"status_received,omitempty"`
	Status         *wire.Status `json:"status,omitempty"`
}

// RejectedItem is one dead-lettered item with its reason and raw values.
type RejectedItem struct {
	ID      int64  `json:"id"`
	EdgeID  string `json:"edge_id"`
	BatchID string `json:"batch_id,omitempty"`
	// Item is reading, event or gap; Index its position in the batch.
	Item   string `json:"item"`
	Index  int    `json:"index"`
	Sensor string `json:"sensor,omitempty"`
	Reason string `json:"reason"`
	// Raw is the item as received, as a JSON object (non-finite values as
	// strings).
	Raw      json.RawMessage `json:"raw,omitempty"`
	Received time.Time       `json:"received"`
}

// GapRecord is one reported loss of readings.
type GapRecord struct {
	ID       int64     `json:"id"`
	EdgeID   string    `json:"edge_id"`
	BatchID  string    `json:"batch_id,omitempty"`
	Sensor   string    `json:"sensor,omitempty"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Count    int64     `json:"count"`
	Reason   string    `json:"reason"`
	Received time.Time `json:"received"`
}
