package store

import (
	"encoding/json"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Role is what a credential may do.
type Role string

// Roles. Edges may ingest and report status; viewers read; operators also
// act on alerts; admins also manage keys, edges and models.
const (
	RoleEdge     Role = "edge"
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// Valid reports whether r is an API-key role (edge is not: edges get tokens).
func (r Role) Valid() bool { return r == RoleViewer || r == RoleOperator || r == RoleAdmin }

// Principal kinds.
const (
	PrincipalEdge   = "edge"
	PrincipalAPIKey = "apikey"
)

// Principal is an authenticated caller.
type Principal struct {
	// Kind is PrincipalEdge or PrincipalAPIKey.
	Kind string
	// ID is the edge's num or the API key's id.
	ID   int64
	Name string
	Role Role
	// EdgeID is the edge id, for edges.
	EdgeID string
}

// Edge is a registered edge agent and what it last reported.
type Edge struct {
	ID        string
	Name      string
	CreatedAt time.Time
	// RevokedAt is zero while the edge's token is valid.
	RevokedAt time.Time
	// LastSeen is the time of its last batch or status (zero: never).
	LastSeen time.Time
	Version  string
	// Status is the last status report, nil when none arrived yet.
	Status   *wire.Status
	StatusAt time.Time
	// Copied from Status for filtering and display.
	BacklogRecords   int64
	BacklogBytes     int64
	OldestAgeSeconds float64
	RunwayHours      float64
	ClockOffsetMs    float64
}

// APIKey is an API key's metadata; the secret itself is never stored.
type APIKey struct {
	ID        int64
	Name      string
	Role      Role
	CreatedAt time.Time
	// RevokedAt is zero while the key is valid.
	RevokedAt time.Time
}

// Range policies of a sensor: what happens to a value outside its
// physical range.
const (
	RangeFlag   = "flag"   // store it with FlagOutOfRange set
	RangeReject = "reject" // reject it to the dead-letter table
)

// FlagOutOfRange is set by the collector on a stored reading whose value
// lies outside its sensor's physical range (policy RangeFlag). It uses the
// top bit of wire.Flags, which the edge never sets.
const FlagOutOfRange wire.Flags = 1 << 15

// Sensor is an entry of the sensor registry.
type Sensor struct {
	// ID is the stable key "site/line/asset/name".
	ID    string
	Site  string
	Line  string
	Asset string
	Name  string
	Type  string
	Unit  string
	// RangeMin and RangeMax bound the physical range; nil when open.
	RangeMin *float64
	RangeMax *float64
	// RangePolicy is RangeFlag or RangeReject.
	RangePolicy string
	// EdgeID is the edge that owns the sensor ("" when none).
	EdgeID         string
	AutoRegistered bool
	CreatedAt      time.Time
	// LastValue and LastTime are the newest stored reading (nil/zero: none).
	LastValue *float64
	LastTime  time.Time
}

// Page selects one page of a listing: Cursor is "" for the first page or
// the next cursor returned by the previous call; Limit ≤ 0 means
// DefaultPageLimit and is capped at the method's maximum.
type Page struct {
	Cursor string
	Limit  int
}

// Paging limits.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
	// MaxReadingsLimit caps one page of readings (raw or bucketed).
	MaxReadingsLimit = 10000
)

func (p Page) limit(maxLimit int) int {
	switch {
	case p.Limit <= 0:
		return min(DefaultPageLimit, maxLimit)
	case p.Limit > maxLimit:
		return maxLimit
	}
	return p.Limit
}

// SensorFilter narrows ListSensors; empty fields match everything.
type SensorFilter struct {
	Site   string
	Asset  string
	Type   string
	EdgeID string
}

// Aggregations for ReadingsQuery.Agg.
const (
	AggAvg   = "avg"
	AggMin   = "min"
	AggMax   = "max"
	AggCount = "count"
	AggLast  = "last"
)

// ReadingsQuery selects readings of one sensor in [From, To).
type ReadingsQuery struct {
	Sensor string
	From   time.Time
	To     time.Time
	// Step is the bucket width; 0 means raw readings.
	Step time.Duration
	// Agg is one of the Agg* constants (default avg); used with Step.
	Agg string
}

// Point is one raw reading or one time bucket.
type Point struct {
	Sensor string
	// Time is the reading's time or the bucket's start.
	Time  time.Time
	Value float64
	// Count is the number of readings in the bucket (1 for a raw reading).
	Count   int64
	Quality wire.Quality
	Flags   wire.Flags
	Score   float32
	Model   string
}

// RejectedFilter narrows ListRejected; zero fields match everything.
type RejectedFilter struct {
	EdgeID  string
	BatchID string
	Sensor  string
	Reason  string
	// Since and Until bound the receive time.
	Since time.Time
	Until time.Time
}

// RejectedItem is one dead-letter row.
type RejectedItem struct {
	ID      int64
	EdgeID  string
	BatchID string
	// Item is wire.ItemReading, wire.ItemEvent or wire.ItemGap; Index its
	// position in the batch.
	Item   string
	Index  int
	Sensor string
	Reason string
	// Raw holds the item's raw values as JSON.
	Raw        json.RawMessage
	ReceivedAt time.Time
}

// GapFilter narrows ListGaps; zero fields match everything.
type GapFilter struct {
	EdgeID string
	Sensor string
	Reason string
	// Since and Until select gaps overlapping [Since, Until).
	Since time.Time
	Until time.Time
}

// GapRecord is a stored gap report.
type GapRecord struct {
	ID         int64
	EdgeID     string
	BatchID    string
	Sensor     string
	From       time.Time
	To         time.Time
	Count      int64
	Reason     string
	Seq        int64
	ReceivedAt time.Time
}
