package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// bucketOriginSQL is the origin of time buckets: Monday 2000-01-03 UTC, the
// default origin of TimescaleDB's time_bucket, so date_bin on plain
// PostgreSQL and the continuous aggregates share one grid.
const bucketOriginSQL = "TIMESTAMPTZ '2000-01-03 00:00:00+00'"

// MaxBuckets bounds From..To / Step of one bucketed query, so a tiny step
// over a long range cannot make the server build millions of buckets.
const MaxBuckets = 100_000

// sensorColumns are the columns scanSensor reads, from sensorsFrom.
const sensorColumns = `s.id, s.site, s.line, s.asset, s.name, s.type, s.unit, s.range_min, s.range_max, s.range_policy,
	COALESCE(s.edge_id, ''), s.auto_registered, s.created_at, l.value, l.time`

// sensorsFrom joins each sensor s to its newest stored reading l (NULLs
// when it has none). Last values are not kept in the sensors table, so
// that ingest does not rewrite a sensors row per sensor and batch; the
// primary key (sensor_id, time) of readings makes this one index probe
// (per partition or chunk, newest first) for each sensor returned.
const sensorsFrom = ` FROM sensors s LEFT JOIN LATERAL (SELECT value, time FROM readings
	WHERE sensor_id = s.num ORDER BY time DESC LIMIT 1) l ON true`

func scanSensor(r pgx.Row) (Sensor, error) {
	var s Sensor
	var lastTime *time.Time
	err := r.Scan(&s.ID, &s.Site, &s.Line, &s.Asset, &s.Name, &s.Type, &s.Unit, &s.RangeMin, &s.RangeMax,
		&s.RangePolicy, &s.EdgeID, &s.AutoRegistered, &s.CreatedAt, &s.LastValue, &lastTime)
	s.LastTime = deref(lastTime)
	return s, err
}

// ListSensors returns registry entries ordered by id, filtered, one page at
// a time, each with its last value and time.
func (db *DB) ListSensors(ctx context.Context, f SensorFilter, p Page) ([]Sensor, string, error) {
	after, err := decodeCursor(p.Cursor, cursorString)
	if err != nil {
		return nil, "", err
	}
	limit := p.limit(MaxPageLimit)
	var w filterSQL
	w.add("s.id > $?", after.s)
	w.eq("s.site", f.Site)
	w.eq("s.asset", f.Asset)
	w.eq("s.type", f.Type)
	w.eq("s.edge_id", f.EdgeID)
	sql, args := w.query(`SELECT `+sensorColumns+sensorsFrom, "s.id", limit+1)
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list sensors: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sensor, error) { return scanSensor(r) })
	if err != nil {
		return nil, "", fmt.Errorf("cannot list sensors: %w", err)
	}
	out, next := trimPage(out, limit, func(s Sensor) cursor { return cursor{kind: cursorString, s: s.ID} })
	return out, next, nil
}

// GetSensor returns one registry entry; ErrNotFound when there is none.
func (db *DB) GetSensor(ctx context.Context, id string) (Sensor, error) {
	s, err := scanSensor(db.pool.QueryRow(ctx, `SELECT `+sensorColumns+sensorsFrom+` WHERE s.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Sensor{}, fmt.Errorf("sensor %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Sensor{}, fmt.Errorf("cannot get sensor %q: %w", id, err)
	}
	return s, nil
}

func (db *DB) sensorNum(ctx context.Context, id string) (int32, error) {
	var n int32
	err := db.pool.QueryRow(ctx, `SELECT num FROM sensors WHERE id = $1`, id).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("sensor %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot look up sensor %q: %w", id, err)
	}
	return n, nil
}

// Readings returns readings of one sensor with From ≤ time < To, oldest
// first, one page at a time. With Step = 0 the points are raw readings;
// otherwise they are buckets of width Step aligned to 2000-01-03 UTC (the
// time_bucket grid), each with the Agg of its values and its count; empty
// buckets are omitted. With TimescaleDB, a query whose step is a whole
// number of minutes (hours) and whose From and To lie on that grid reads
// the 1 min (1 h) continuous aggregate instead of raw rows.
// ErrNotFound when the sensor is unknown; ErrInvalid for a bad query.
func (db *DB) Readings(ctx context.Context, q ReadingsQuery, p Page) ([]Point, string, error) {
	if q.From.IsZero() || q.To.IsZero() || !q.From.Before(q.To) {
		return nil, "", fmt.Errorf("%w: readings need from < to", ErrInvalid)
	}
	if q.Step < 0 {
		return nil, "", fmt.Errorf("%w: negative step", ErrInvalid)
	}
	if q.Step > 0 {
		if q.Step < time.Millisecond {
			return nil, "", fmt.Errorf("%w: step %s below 1ms", ErrInvalid, q.Step)
		}
		if q.To.Sub(q.From)/q.Step > MaxBuckets {
			return nil, "", fmt.Errorf("%w: from..to / step gives more than %d buckets", ErrInvalid, MaxBuckets)
		}
		if q.Agg == "" {
			q.Agg = AggAvg
		}
		if rawAggExpr(q.Agg) == "" {
			return nil, "", fmt.Errorf("%w: agg %q (want avg, min, max, count or last)", ErrInvalid, q.Agg)
		}
	}
	after, err := decodeCursor(p.Cursor, cursorTime)
	if err != nil {
		return nil, "", err
	}
	num, err := db.sensorNum(ctx, q.Sensor)
	if err != nil {
		return nil, "", err
	}
	limit := p.limit(MaxReadingsLimit)
	from := q.From
	if p.Cursor != "" {
		// Resume strictly after the last point of the previous page; stored
		// times have microsecond resolution.
		if c := time.Unix(0, after.i).Add(time.Microsecond); c.After(from) {
			from = c
		}
	}
	var rows pgx.Rows
	if q.Step == 0 {
		rows, err = db.pool.Query(ctx, `SELECT time, value, 1::bigint, quality, flags, score, COALESCE(model, '')
			FROM readings WHERE sensor_id = $1 AND time >= $2 AND time < $3 ORDER BY time LIMIT $4`,
			num, from, q.To, limit+1)
	} else {
		sql := ""
		if db.Timescale() {
			if cagg := tsCaggFor(q.Step); cagg != "" && onGrid(q.From, caggWidth(cagg)) && onGrid(q.To, caggWidth(cagg)) {
				sql = tsBucketedFromCagg(cagg, q.Agg)
			}
		}
		if sql == "" {
			sql = `SELECT date_bin($4::interval, time, ` + bucketOriginSQL + `) AS b, ` + rawAggExpr(q.Agg) + ` AS v, count(*) AS n
				FROM readings WHERE sensor_id = $1 AND time >= $2 AND time < $3
				GROUP BY b ORDER BY b LIMIT $5`
		}
		if p.Cursor != "" {
			// Buckets start at or after q.From; the next page starts at the
			// bucket after the last one returned.
			from = time.Unix(0, after.i).Add(q.Step)
			if from.Before(q.From) {
				from = q.From
			}
		}
		rows, err = db.pool.Query(ctx, sql, num, from, q.To, q.Step, limit+1)
	}
	if err != nil {
		return nil, "", fmt.Errorf("cannot query readings of %q: %w", q.Sensor, err)
	}
	points, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Point, error) {
		pt := Point{Sensor: q.Sensor}
		if q.Step == 0 {
			var qual int16
			var flags int32
			err := r.Scan(&pt.Time, &pt.Value, &pt.Count, &qual, &flags, &pt.Score, &pt.Model)
			pt.Quality, pt.Flags = wire.Quality(qual), wire.Flags(flags)
			return pt, err
		}
		err := r.Scan(&pt.Time, &pt.Value, &pt.Count)
		return pt, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("cannot query readings of %q: %w", q.Sensor, err)
	}
	for i := range points {
		points[i].Time = points[i].Time.UTC()
	}
	points, next := trimPage(points, limit, func(pt Point) cursor { return cursor{kind: cursorTime, i: pt.Time.UnixNano()} })
	return points, next, nil
}

// rawAggExpr is the SQL aggregate over raw readings for agg, or "".
func rawAggExpr(agg string) string {
	switch agg {
	case AggAvg:
		return "avg(value)"
	case AggMin:
		return "min(value)"
	case AggMax:
		return "max(value)"
	case AggCount:
		return "count(*)::double precision"
	case AggLast:
		return "(array_agg(value ORDER BY time DESC))[1]"
	}
	return ""
}

func caggWidth(cagg string) time.Duration {
	if cagg == cagg1h {
		return time.Hour
	}
	return time.Minute
}

// onGrid reports whether t is a multiple of width from the bucket origin.
func onGrid(t time.Time, width time.Duration) bool {
	origin := time.Date(2000, 1, 3, 0, 0, 0, 0, time.UTC)
	return t.Sub(origin)%width == 0
}

// LatestReadings returns the newest stored reading of each given sensor
// that has one, in the order asked; unknown sensors and sensors without
// readings are left out.
func (db *DB) LatestReadings(ctx context.Context, sensors []string) ([]Point, error) {
	if len(sensors) == 0 {
		return nil, nil
	}
	if len(sensors) > MaxPageLimit {
		return nil, fmt.Errorf("%w: more than %d sensors", ErrInvalid, MaxPageLimit)
	}
	rows, err := db.pool.Query(ctx, `SELECT s.id, r.time, r.value, r.quality, r.flags, r.score, COALESCE(r.model, '')
		FROM unnest($1::text[]) WITH ORDINALITY AS a(id, ord)
		JOIN sensors s ON s.id = a.id
		CROSS JOIN LATERAL (SELECT time, value, quality, flags, score, model FROM readings
			WHERE sensor_id = s.num ORDER BY time DESC LIMIT 1) r
		ORDER BY a.ord`, sensors)
	if err != nil {
		return nil, fmt.Errorf("cannot query latest readings: %w", err)
	}
	points, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Point, error) {
		var pt Point
		var qual int16
		var flags int32
		err := r.Scan(&pt.Sensor, &pt.Time, &pt.Value, &qual, &flags, &pt.Score, &pt.Model)
		pt.Quality, pt.Flags, pt.Count, pt.Time = wire.Quality(qual), wire.Flags(flags), 1, pt.Time.UTC()
		return pt, err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot query latest readings: %w", err)
	}
	return points, nil
}

// filterSQL builds "col = $n" conditions for the non-empty values.
type filterSQL struct {
	where []string
	args  []any
}

func (f *filterSQL) add(cond string, v any) {
	f.args = append(f.args, v)
	f.where = append(f.where, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(f.args))))
}

func (f *filterSQL) eq(col, v string) {
	if v != "" {
		f.add(col+" = $?", v)
	}
}

// query appends the conditions, "ORDER BY order" and a LIMIT of limit to
// base, and returns the SQL with its arguments.
func (f *filterSQL) query(base, order string, limit int) (string, []any) {
	args := append(f.args, limit)
	if len(f.where) > 0 {
		base += " WHERE " + strings.Join(f.where, " AND ")
	}
	return base + fmt.Sprintf(" ORDER BY %s LIMIT $%d", order, len(args)), args
}

// ListRejected returns dead-letter rows, newest first, one page at a time.
func (db *DB) ListRejected(ctx context.Context, f RejectedFilter, p Page) ([]RejectedItem, string, error) {
	after, err := decodeCursor(p.Cursor, cursorInt)
	if err != nil {
		return nil, "", err
	}
	limit := p.limit(MaxPageLimit)
	var w filterSQL
	if p.Cursor != "" {
		w.add("id < $?", after.i)
	}
	w.eq("edge_id", f.EdgeID)
	w.eq("batch_id", f.BatchID)
	w.eq("sensor", f.Sensor)
	w.eq("reason", f.Reason)
	if !f.Since.IsZero() {
		w.add("received_at >= $?", f.Since)
	}
	if !f.Until.IsZero() {
		w.add("received_at < $?", f.Until)
	}
	sql, args := w.query(`SELECT id, edge_id, batch_id, item, item_index, sensor, reason, raw, received_at FROM rejected_readings`,
		"id DESC", limit+1)
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list rejected items: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RejectedItem, error) {
		var it RejectedItem
		var idx int32
		err := r.Scan(&it.ID, &it.EdgeID, &it.BatchID, &it.Item, &idx, &it.Sensor, &it.Reason, &it.Raw, &it.ReceivedAt)
		it.Index = int(idx)
		return it, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("cannot list rejected items: %w", err)
	}
	items, next := trimPage(items, limit, func(it RejectedItem) cursor { return cursor{kind: cursorInt, i: it.ID} })
	return items, next, nil
}

// ListGaps returns gap records, newest first, one page at a time.
func (db *DB) ListGaps(ctx context.Context, f GapFilter, p Page) ([]GapRecord, string, error) {
	after, err := decodeCursor(p.Cursor, cursorInt)
	if err != nil {
		return nil, "", err
	}
	limit := p.limit(MaxPageLimit)
	var w filterSQL
	if p.Cursor != "" {
		w.add("id < $?", after.i)
	}
	w.eq("edge_id", f.EdgeID)
	w.eq("sensor", f.Sensor)
	w.eq("reason", f.Reason)
	if !f.Since.IsZero() {
		w.add("to_time >= $?", f.Since)
	}
	if !f.Until.IsZero() {
		w.add("from_time < $?", f.Until)
	}
	sql, args := w.query(`SELECT id, edge_id, batch_id, sensor, from_time, to_time, count, reason, seq, received_at FROM gaps`,
		"id DESC", limit+1)
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list gaps: %w", err)
	}
	gaps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GapRecord, error) {
		var g GapRecord
		err := r.Scan(&g.ID, &g.EdgeID, &g.BatchID, &g.Sensor, &g.From, &g.To, &g.Count, &g.Reason, &g.Seq, &g.ReceivedAt)
		g.From, g.To = g.From.UTC(), g.To.UTC()
		return g, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("cannot list gaps: %w", err)
	}
	gaps, next := trimPage(gaps, limit, func(g GapRecord) cursor { return cursor{kind: cursorInt, i: g.ID} })
	return gaps, next, nil
}
