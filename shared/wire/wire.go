// Package wire defines the edge→collector format: the batch of readings,
// events and gap records that sm-edge forwards, the collector's answer to
// it, and the status report an edge posts periodically.
//
// The types here are the contract between the two binaries. The byte
// layout of a batch is specified in FORMAT.md next to this file; answers
// and status reports are JSON. Decoding never panics on any input.
package wire

import "time"

// Quality is the source's own judgement of a sample (OPC UA style).
type Quality uint8

// Quality values. The zero value is good, so a payload without a quality
// field means a good sample.
const (
	QualityGood      Quality = 0
	QualityUncertain Quality = 1
	QualityBad       Quality = 2
)

// String returns "good", "uncertain" or "bad".
func (q Quality) String() string {
	switch q {
	case QualityGood:
		return "good"
	case QualityUncertain:
		return "uncertain"
	case QualityBad:
		return "bad"
	}
	return "invalid"
}

// Valid reports whether q is one of the defined qualities.
func (q Quality) Valid() bool { return q <= QualityBad }

// Flags mark a reading with what the edge found out about it.
type Flags uint16

// Reading flags.
const (
	// FlagAnomaly: the model's score was at or above its threshold.
	FlagAnomaly Flags = 1 << iota
	// FlagLimit: the value violated an alarm limit of the sensor's profile.
	FlagLimit
	// FlagClockSkewed: the source timestamp was far from the edge clock.
	FlagClockSkewed
	// FlagReplayed: the reading was re-sent from a backlog or an export.
	FlagReplayed
	// FlagNoTimestamp: the payload had no timestamp; the receive time was used.
	FlagNoTimestamp
)

// Reading is one numeric sample of one sensor (ARCHITECTURE.md §4.1).
// Its identity in the store is (Sensor, Time).
type Reading struct {
	// Sensor is the stable sensor id, e.g. "site1/line2/pump7/vib_x".
	Sensor string
	// Time is the source timestamp in Unix nanoseconds, UTC.
	Time int64
	// Value is the sample; it must be finite.
	Value float64
	// Quality is the source's quality code.
	Quality Quality
	// Flags are set at the edge.
	Flags Flags
	// Seq is the edge's sequence number for this record; it is unique and
	// increasing per edge and never reused, even across restarts.
	Seq uint64
	// Score is the anomaly score in [0,1] given at the edge; 0 when unscored.
	Score float32
	// Model is "name@version" of the model that scored the reading, or ""
	// when the reading was not scored.
	Model string
}

// Severity ranks events and alerts.
type Severity uint8

// Severities, from least to most severe. The zero value is invalid so a
// missing severity is caught.
const (
	SeverityWarning  Severity = 1
	SeverityMinor    Severity = 2
	SeverityMajor    Severity = 3
	SeverityCritical Severity = 4
)

// String returns the lower-case name of the severity.
func (s Severity) String() string {
	switch s {
	case SeverityWarning:
		return "warning"
	case SeverityMinor:
		return "minor"
	case SeverityMajor:
		return "major"
	case SeverityCritical:
		return "critical"
	}
	return "invalid"
}

// EventKind says which rule family raised an event.
type EventKind uint8

// Event kinds.
const (
	// EventAnomaly: a model's score stayed above its threshold.
	EventAnomaly EventKind = 1
	// EventLimit: a value crossed an alarm limit (HH, H, L, LL) of the profile.
	EventLimit EventKind = 2
)

// EventState says whether the condition began or ended.
type EventState uint8

// Event states.
const (
	// EventRaised: the condition held for its minimum duration.
	EventRaised EventState = 1
	// EventCleared: the condition has cleared (after hysteresis).
	EventCleared EventState = 2
)

// Event is an anomaly or limit event detected at the edge, with hysteresis
// and minimum duration already applied. The collector turns events into
// alerts. Events are queued ahead of raw telemetry and shed last.
type Event struct {
	Sensor string
	// Asset is the asset the sensor belongs to, for grouping alerts.
	Asset    string
	Kind     EventKind
	State    EventState
	Severity Severity
	// Rule names the rule within its kind: "HH", "H", "L", "LL" for limits,
	// the detector's name for anomalies.
	Rule string
	// Time is when the event was raised or cleared (Unix ns).
	Time int64
	// WindowStart and WindowEnd bound the samples that triggered it (Unix ns).
	WindowStart int64
	WindowEnd   int64
	// Value is the last value in the window; Score the peak score.
	Value float64
	Score float32
	// Threshold is the limit or score threshold that was crossed.
	Threshold float64
	Model     string
	Seq       uint64
}

// Gap records readings that the edge lost or shed, so that loss is visible
// and accounted for instead of silent (ARCHITECTURE.md §3.3).
type Gap struct {
	// Sensor is the sensor whose readings were lost, or "" for losses that
	// cannot be attributed to one sensor (for example a corrupt queue file).
	Sensor string
	// From and To bound the lost readings' timestamps (Unix ns).
	From int64
	To   int64
	// Count is the number of readings lost; 0 when unknown.
	Count uint64
	// Reason is a short machine-readable cause, one of the Gap* constants.
	Reason string
	Seq    uint64
}

// Gap reasons.
const (
	GapBudget     = "buffer_budget"  // shed because the queue's byte budget was full
	GapDiskError  = "disk_error"     // the queue could not write
	GapCorrupt    = "queue_corrupt"  // a corrupt queue file was moved aside
	GapRejected   = "dead_letter"    // the collector refused a batch as undecodable
	GapBrokerLoss = "broker_dropped" // sequence gaps seen in the source stream
)

// Batch is what an edge sends in one POST to /api/v1/ingest.
type Batch struct {
	// EdgeID identifies the sending edge; it must match the credential.
	EdgeID string
	// BatchID is unique per edge; a retried batch keeps its id.
	BatchID string
	// FirstSeq and LastSeq bound the sequence numbers in the batch.
	FirstSeq uint64
	LastSeq  uint64
	// SentAt is the edge clock when the batch was (last) sent, Unix ns.
	SentAt   int64
	Readings []Reading
	Events   []Event
	Gaps     []Gap
}

// Reset empties b for reuse, keeping the capacity of its slices.
func (b *Batch) Reset() {
	*b = Batch{Readings: b.Readings[:0], Events: b.Events[:0], Gaps: b.Gaps[:0]}
}

// Item kinds in a Rejection.
const (
	ItemReading = "reading"
	ItemEvent   = "event"
	ItemGap     = "gap"
)

// Rejection explains why one item of a batch was not stored.
type Rejection struct {
	// Item is ItemReading, ItemEvent or ItemGap; Index its position in the
	// batch's slice of that kind.
	Item   string `json:"item"`
	Index  int    `json:"index"`
	Sensor string `json:"sensor,omitempty"`
	Reason string `json:"reason"`
}

// IngestResponse is the collector's answer to a batch. It is sent only
// after the batch's transaction has committed, so a 2xx with this body
// means every accepted item is durable and the edge may delete the batch.
type IngestResponse struct {
	BatchID   string `json:"batch_id"`
	Accepted  int    `json:"accepted"`
	Duplicate int    `json:"duplicate"`
	Rejected  int    `json:"rejected"`
	// Rejections lists each rejected item with its reason; rejected items
	// are kept in the collector's dead-letter table.
	Rejections []Rejection `json:"rejections,omitempty"`
	// ServerTime lets the edge estimate its clock offset.
	ServerTime time.Time `json:"server_time"`
}

// ModelRef names a model version active on an edge.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Sensors is how many sensors the model scores.
	Sensors int `json:"sensors"`
}

// Status is the report an edge posts to /api/v1/edges/{id}/status.
type Status struct {
	EdgeID    string    `json:"edge_id"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	SentAt    time.Time `json:"sent_at"`
	// Broker is "connected", "connecting" or "disconnected".
	Broker string `json:"broker"`
	// Backlog is what waits in the edge's queue.
	BacklogRecords int64 `json:"backlog_records"`
	BacklogBytes   int64 `json:"backlog_bytes"`
	// OldestAgeSeconds is the age of the oldest queued record.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// RunwayHours is how long an outage the queue can still absorb at the
	// current ingest rate before it must shed.
	RunwayHours float64 `json:"runway_hours"`
	// ReadingsPerSecond is the current ingest rate.
	ReadingsPerSecond float64 `json:"readings_per_second"`
	// Drops counts lost readings by reason since start.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// ClockOffsetMs is the collector's clock minus the edge's, estimated
	// from server times in responses.
	ClockOffsetMs float64    `json:"clock_offset_ms"`
	Models        []ModelRef `json:"models,omitempty"`
	// Alarms lists active local alarms, e.g. "uplink_unauthorized".
	Alarms []string `json:"alarms,omitempty"`
}
