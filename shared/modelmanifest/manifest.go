// Package modelmanifest is the model manifest that sm-collector writes to
// S3 and sm-edge polls: which model (name, version, artifact key, SHA-256,
// size) each target runs, with the previous versions kept for rollback.
//
// Both binaries import this package, so they cannot drift apart. The
// format and the S3 layout are specified in
// collector/internal/modelreg/FORMAT.md.
package modelmanifest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// SchemaVersion is the manifest schema this package reads and writes. A
// reader refuses any other value rather than guessing at its meaning.
const SchemaVersion = 1

// MaxPrevious bounds the rollback history kept per target: enough to go
// back several bad releases, small enough that the manifest stays a few KiB.
const MaxPrevious = 10

// Object keys under the configured prefix.
const (
	// ManifestKey is the manifest object's key relative to the prefix.
	ManifestKey = "manifest.json"
	// ArtifactDir holds content-addressed artifacts: ArtifactDir + hex SHA-256.
	ArtifactDir = "artifacts/sha256/"
)

// ArtifactKey returns the content-addressed key of an artifact with the
// given hex SHA-256 under prefix (which is "" or ends with "/").
func ArtifactKey(prefix, sha256Hex string) string {
	return prefix + ArtifactDir + sha256Hex
}

// Manifest is the whole document.
type Manifest struct {
	// Schema is SchemaVersion.
	Schema int `json:"schema"`
	// Generation grows by one with every write; readers may use it to
	// notice an older manifest served by a stale cache.
	Generation int64 `json:"generation"`
	// Updated is when the manifest was written (UTC).
	Updated time.Time `json:"updated"`
	// Entries has one element per distinct Target, sorted by Target.Key.
	Entries []Entry `json:"entries"`
}

// Target says which readings a model applies to. Empty fields match
// everything, so the zero Target is the fleet-wide default.
type Target struct {
	// Edge is an edge id; empty means every edge.
	Edge string `json:"edge,omitempty"`
	// SensorType is a sensor type from the profiles (e.g. "vibration").
	SensorType string `json:"sensor_type,omitempty"`
	// Sensor is a path.Match glob over sensor ids (e.g. "plant1/pump-*").
	Sensor string `json:"sensor,omitempty"`
}

// Key is the canonical text form of t, used to identify a target on the
// command line and in the registry: "edge=E,type=T,sensor=S" with empty
// parts left out, or "*" for the fleet default.
func (t Target) Key() string {
	var parts []string
	if t.Edge != "" {
		parts = append(parts, "edge="+t.Edge)
	}
	if t.SensorType != "" {
		parts = append(parts, "type="+t.SensorType)
	}
	if t.Sensor != "" {
		parts = append(parts, "sensor="+t.Sensor)
	}
	if len(parts) == 0 {
		return "*"
	}
	return strings.Join(parts, ",")
}

// ParseTarget parses the form produced by Target.Key.
func ParseTarget(s string) (Target, error) {
	var t Target
	s = strings.TrimSpace(s)
	if s == "*" || s == "" {
		return t, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return Target{}, fmt.Errorf("target %q: part %q is not key=value", s, part)
		}
		if seen[k] {
			return Target{}, fmt.Errorf("target %q: %s given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "edge":
			t.Edge = v
		case "type":
			t.SensorType = v
		case "sensor":
			t.Sensor = v
		default:
			return Target{}, fmt.Errorf("target %q: unknown key %q (want edge, type or sensor)", s, k)
		}
	}
	if err := t.validate(); err != nil {
		return Target{}, fmt.Errorf("target %q: %w", s, err)
	}
	return t, nil
}

func (t Target) validate() error {
	for _, v := range []string{t.Edge, t.SensorType, t.Sensor} {
		if strings.ContainsAny(v, ",=") {
			return fmt.Errorf("%q may not contain ',' or '='", v)
		}
	}
	if t.Sensor != "" {
		if _, err := path.Match(t.Sensor, ""); err != nil {
			return fmt.Errorf("sensor glob %q: %w", t.Sensor, err)
		}
	}
	return nil
}

// Matches reports whether a reading of sensorID (of sensorType) on edge
// edgeID falls under t.
func (t Target) Matches(edgeID, sensorID, sensorType string) bool {
	if t.Edge != "" && t.Edge != edgeID {
		return false
	}
	if t.SensorType != "" && t.SensorType != sensorType {
		return false
	}
	if t.Sensor != "" {
		ok, err := path.Match(t.Sensor, sensorID)
		if err != nil || !ok {
			return false
		}
	}
	return true
}

// Specificity orders matching targets: a sensor glob beats a sensor type,
// which beats the fleet default; naming the edge breaks ties. A higher
// value is more specific.
func (t Target) Specificity() int {
	s := 0
	if t.Sensor != "" {
		s += 4
	}
	if t.SensorType != "" {
		s += 2
	}
	if t.Edge != "" {
		s++
	}
	return s
}

// Ref names one artifact.
type Ref struct {
	// Name and Version identify the model in the registry.
	Name string `json:"name"`
	// Version is the artifact's version string (e.g. "2026-11-26.1").
	Version string `json:"version"`
	// Kind is the detector kind from the artifact (e.g. "pca").
	Kind string `json:"kind"`
	// Key is the artifact's object key (content-addressed, see ArtifactKey).
	Key string `json:"key"`
	// SHA256 is the lower-case hex SHA-256 of the artifact bytes.
	SHA256 string `json:"sha256"`
	// Size is the artifact's length in bytes.
	Size int64 `json:"size"`
	// Promoted is when this ref became active for the target.
	Promoted time.Time `json:"promoted"`
}

// ID is "name@version", the form used in logs and metrics.
func (r Ref) ID() string { return r.Name + "@" + r.Version }

// Entry is what one target runs now and what it ran before.
type Entry struct {
	Target Target `json:"target"`
	Active Ref    `json:"active"`
	// Previous holds earlier active refs, most recent first, at most
	// MaxPrevious; rollback makes Previous[0] active again.
	Previous []Ref `json:"previous,omitempty"`
}

// Errors returned by Parse and the editing methods.
var (
	// ErrSchema means the manifest has a schema this version cannot read.
	ErrSchema = errors.New("unsupported manifest schema")
	// ErrNoTarget means no entry has the given target.
	ErrNoTarget = errors.New("no such target in manifest")
	// ErrNoPrevious means a rollback found nothing to go back to.
	ErrNoPrevious = errors.New("no previous version to roll back to")
)

// MaxSize bounds the manifest a reader accepts, so a broken or hostile
// object cannot exhaust an edge box's memory. Thousands of targets fit.
const MaxSize = 4 << 20

// Parse decodes and validates a manifest. Unknown fields are errors (the
// schema number changes when fields are added), and every problem found
// is reported with the entry it belongs to.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("manifest is %d bytes, more than the %d allowed", len(data), MaxSize)
	}
	var probe struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if probe.Schema == nil {
		return nil, fmt.Errorf("decode manifest: missing \"schema\": %w", ErrSchema)
	}
	if *probe.Schema != SchemaVersion {
		return nil, fmt.Errorf("manifest schema %d, this program reads %d: %w", *probe.Schema, SchemaVersion, ErrSchema)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate reports every problem in m at once.
func (m *Manifest) Validate() error {
	var errs []error
	if m.Schema != SchemaVersion {
		errs = append(errs, fmt.Errorf("schema %d: %w", m.Schema, ErrSchema))
	}
	seen := map[string]int{}
	for i, e := range m.Entries {
		where := fmt.Sprintf("entries[%d] (target %s)", i, e.Target.Key())
		if j, dup := seen[e.Target.Key()]; dup {
			errs = append(errs, fmt.Errorf("%s: same target as entries[%d]", where, j))
		}
		seen[e.Target.Key()] = i
		if err := e.Target.validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: target: %w", where, err))
		}
		if err := e.Active.validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: active: %w", where, err))
		}
		if len(e.Previous) > MaxPrevious {
			errs = append(errs, fmt.Errorf("%s: %d previous versions, at most %d", where, len(e.Previous), MaxPrevious))
		}
		for j, p := range e.Previous {
			if err := p.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s: previous[%d]: %w", where, j, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (r Ref) validate() error {
	var errs []error
	if r.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if r.Version == "" {
		errs = append(errs, errors.New("version is empty"))
	}
	if r.Key == "" {
		errs = append(errs, errors.New("key is empty"))
	}
	if b, err := hex.DecodeString(r.SHA256); err != nil || len(b) != 32 || strings.ToLower(r.SHA256) != r.SHA256 {
		errs = append(errs, fmt.Errorf("sha256 %q is not 64 lower-case hex digits", r.SHA256))
	}
	if r.Size <= 0 {
		errs = append(errs, fmt.Errorf("size %d, want > 0", r.Size))
	}
	return errors.Join(errs...)
}

// Marshal validates m and encodes it as indented JSON with a final newline.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// New returns an empty manifest of the current schema.
func New() *Manifest { return &Manifest{Schema: SchemaVersion, Entries: []Entry{}} }

// Find returns the entry for target t.
func (m *Manifest) Find(t Target) (Entry, bool) {
	for _, e := range m.Entries {
		if e.Target.Key() == t.Key() {
			return e, true
		}
	}
	return Entry{}, false
}

// ForEdge returns the entries that apply to edgeID (those naming it and
// those for every edge).
func (m *Manifest) ForEdge(edgeID string) []Entry {
	var out []Entry
	for _, e := range m.Entries {
		if e.Target.Edge == "" || e.Target.Edge == edgeID {
			out = append(out, e)
		}
	}
	return out
}

// Promote makes r the active model for t. The ref it replaces moves to
// the front of Previous (dropping the oldest beyond MaxPrevious).
// Promoting the ref that is already active changes nothing and returns
// false.
func (m *Manifest) Promote(t Target, r Ref) bool {
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Target.Key() != t.Key() {
			continue
		}
		if e.Active.SHA256 == r.SHA256 && e.Active.Name == r.Name && e.Active.Version == r.Version {
			return false
		}
		prev := append([]Ref{e.Active}, e.Previous...)
		// A ref promoted again leaves its older place in the history.
		kept := prev[:0]
		for _, p := range prev {
			if !(p.Name == r.Name && p.Version == r.Version) {
				kept = append(kept, p)
			}
		}
		if len(kept) > MaxPrevious {
			kept = kept[:MaxPrevious]
		}
		e.Active, e.Previous = r, kept
		return true
	}
	m.Entries = append(m.Entries, Entry{Target: t, Active: r})
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Target.Key() < m.Entries[j].Target.Key() })
	return true
}

// Rollback makes Previous[0] of t active again and drops the active ref
// (a rolled-back model is not offered for the next rollback). It returns
// the ref now active and the one removed.
func (m *Manifest) Rollback(t Target) (now, removed Ref, err error) {
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Target.Key() != t.Key() {
			continue
		}
		if len(e.Previous) == 0 {
			return Ref{}, Ref{}, fmt.Errorf("target %s: %w", t.Key(), ErrNoPrevious)
		}
		removed = e.Active
		e.Active = e.Previous[0]
		e.Previous = append([]Ref(nil), e.Previous[1:]...)
		return e.Active, removed, nil
	}
	return Ref{}, Ref{}, fmt.Errorf("target %s: %w", t.Key(), ErrNoTarget)
}
