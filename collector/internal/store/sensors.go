package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"

	"github.com/jackc/pgx/v5"
)

// SensorMeta is what ingest needs to know about a sensor to validate and
// store its readings.
type SensorMeta struct {
	// Num is the compact key stored in readings.
	Num int32
	// EdgeID owns the sensor ("" when no edge does).
	EdgeID string
	// Min and Max bound the physical range (−Inf/+Inf when open).
	Min, Max float64
	// Policy is RangeFlag or RangeReject.
	Policy string
}

const sensorMetaColumns = `id, num, COALESCE(edge_id, ''), COALESCE(range_min, '-Infinity'::float8), COALESCE(range_max, 'Infinity'::float8), range_policy`

// LookupSensors returns the registry entries of the given sensor ids that
// exist; unknown ids are absent from the map.
func (db *DB) LookupSensors(ctx context.Context, ids []string) (map[string]SensorMeta, error) {
	out := make(map[string]SensorMeta, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	// Planned per call (QueryExecModeExec), not as a cached prepared
	// statement: the plan cached while the registry was small stays on the
	// connection as auto-registration grows the table (which no ANALYZE
	// may have seen yet), and lookups then grow with the table: 120-155 ms
	// per 400 ids at 20,000 sensors against ~4 ms planned per call
	// (BenchmarkLookupSensorsGrownRegistry), 0.1-1.5 s at 40,000.
	rows, err := db.pool.Query(ctx, `SELECT `+sensorMetaColumns+` FROM sensors WHERE id = ANY($1)`, pgx.QueryExecModeExec, ids)
	if err != nil {
		return nil, fmt.Errorf("cannot look up sensors: %w", err)
	}
	if err := collectMeta(rows, out); err != nil {
		return nil, fmt.Errorf("cannot look up sensors: %w", err)
	}
	return out, nil
}

func collectMeta(rows pgx.Rows, out map[string]SensorMeta) error {
	defer rows.Close()
	for rows.Next() {
		var id string
		var m SensorMeta
		if err := rows.Scan(&id, &m.Num, &m.EdgeID, &m.Min, &m.Max, &m.Policy); err != nil {
			return err
		}
		out[id] = m
		if math.IsNaN(m.Min) || math.IsNaN(m.Max) {
			return fmt.Errorf("sensor %q has a NaN range bound", id)
		}
	}
	return rows.Err()
}

// RegisterSensors auto-registers the given sensor ids (which must parse
// with ParseSensorID) as owned by edgeID, keeping existing entries as they
// are, and returns the registry entries of all of them. It is idempotent
// and safe under concurrency; it runs in its own short transaction, ahead
// of the batch's, so that a failed batch leaves at most unused entries.
func (db *DB) RegisterSensors(ctx context.Context, edgeID string, ids []string) (map[string]SensorMeta, error) {
	if len(ids) == 0 {
		return map[string]SensorMeta{}, nil
	}
	site := make([]string, len(ids))
	line := make([]string, len(ids))
	asset := make([]string, len(ids))
	name := make([]string, len(ids))
	for i, id := range ids {
		p, err := ParseSensorID(id)
		if err != nil {
			return nil, fmt.Errorf("%w: sensor %q: %v", ErrInvalid, id, err)
		}
		site[i], line[i], asset[i], name[i] = p.Site, p.Line, p.Asset, p.Name
	}
	var owner any
	if edgeID != "" {
		owner = edgeID
	}
	// The new entries come back with RETURNING; only ids that existed
	// already (or that a concurrent batch registered first) need a lookup.
	rows, err := db.pool.Query(ctx, `INSERT INTO sensors (id, site, line, asset, name, edge_id, auto_registered)
		SELECT u.id, u.site, u.line, u.asset, u.name, $6, true
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(id, site, line, asset, name)
		ORDER BY u.id
		ON CONFLICT (id) DO NOTHING
		RETURNING `+sensorMetaColumns, ids, site, line, asset, name, owner)
	if err != nil {
		return nil, fmt.Errorf("cannot register %d sensors for edge %q: %w", len(ids), edgeID, err)
	}
	out := make(map[string]SensorMeta, len(ids))
	if err := collectMeta(rows, out); err != nil {
		return nil, fmt.Errorf("cannot register %d sensors for edge %q: %w", len(ids), edgeID, err)
	}
	var existing []string
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			existing = append(existing, id)
		}
	}
	if len(existing) == 0 {
		return out, nil
	}
	found, err := db.LookupSensors(ctx, existing)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, found)
	return out, nil
}

// UpsertSensor creates or updates a registry entry's metadata (type, unit,
// physical range and its policy, owner). Parts are derived from the id.
// Last values come from readings (see ListSensors).
func (db *DB) UpsertSensor(ctx context.Context, s Sensor) error {
	p, err := ParseSensorID(s.ID)
	if err != nil {
		return fmt.Errorf("%w: sensor %q: %v", ErrInvalid, s.ID, err)
	}
	if s.RangePolicy == "" {
		s.RangePolicy = RangeFlag
	}
	if s.RangePolicy != RangeFlag && s.RangePolicy != RangeReject {
		return fmt.Errorf("%w: sensor %q: range policy %q (want flag or reject)", ErrInvalid, s.ID, s.RangePolicy)
	}
	for _, b := range []*float64{s.RangeMin, s.RangeMax} {
		if b != nil && math.IsNaN(*b) {
			return fmt.Errorf("%w: sensor %q: range bound is NaN", ErrInvalid, s.ID)
		}
	}
	if s.RangeMin != nil && s.RangeMax != nil && !(*s.RangeMin <= *s.RangeMax) {
		return fmt.Errorf("%w: sensor %q: range min %v above max %v", ErrInvalid, s.ID, *s.RangeMin, *s.RangeMax)
	}
	var owner any
	if s.EdgeID != "" {
		owner = s.EdgeID
	}
	_, err = db.pool.Exec(ctx, `INSERT INTO sensors (id, site, line, asset, name, type, unit, range_min, range_max, range_policy, edge_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, unit = EXCLUDED.unit,
			range_min = EXCLUDED.range_min, range_max = EXCLUDED.range_max,
			range_policy = EXCLUDED.range_policy, edge_id = EXCLUDED.edge_id`,
		s.ID, p.Site, p.Line, p.Asset, p.Name, s.Type, s.Unit, s.RangeMin, s.RangeMax, s.RangePolicy, owner)
	if err != nil {
		var fk = "23503"
		if pgCode(err) == fk {
			return fmt.Errorf("%w: sensor %q: edge %q does not exist", ErrInvalid, s.ID, s.EdgeID)
		}
		return fmt.Errorf("cannot save sensor %q: %w", s.ID, err)
	}
	return nil
}

// edgeNum returns the compact key of an edge, cached (nums never change).
func (db *DB) edgeNum(ctx context.Context, q *pgx.Conn, edgeID string) (int32, error) {
	db.edgeMu.RLock()
	n, ok := db.edgeNums[edgeID]
	db.edgeMu.RUnlock()
	if ok {
		return n, nil
	}
	err := q.QueryRow(ctx, `SELECT num FROM edges WHERE id = $1`, edgeID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("edge %q: %w", edgeID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot look up edge %q: %w", edgeID, err)
	}
	db.edgeMu.Lock()
	db.edgeNums[edgeID] = n
	db.edgeMu.Unlock()
	return n, nil
}
