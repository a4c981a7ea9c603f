package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/smartmaint/smartmaint/shared/wire"
)

const edgeColumns = `id, name, created_at, revoked_at, last_seen, version, last_status, status_at,
	backlog_records, backlog_bytes, oldest_age_seconds, runway_hours, clock_offset_ms`

func scanEdge(r pgx.Row) (Edge, error) {
	var (
		e                       Edge
		revoked, seen, statusAt *time.Time
		status                  []byte
		br, bb                  *int64
		age, runway, offset     *float64
	)
	if err := r.Scan(&e.ID, &e.Name, &e.CreatedAt, &revoked, &seen, &e.Version, &status, &statusAt,
		&br, &bb, &age, &runway, &offset); err != nil {
		return Edge{}, err
	}
	e.RevokedAt, e.LastSeen, e.StatusAt = deref(revoked), deref(seen), deref(statusAt)
	e.BacklogRecords, e.BacklogBytes = deref(br), deref(bb)
	e.OldestAgeSeconds, e.RunwayHours, e.ClockOffsetMs = deref(age), deref(runway), deref(offset)
	if status != nil {
		var st wire.Status
		if err := json.Unmarshal(status, &st); err != nil {
			return Edge{}, fmt.Errorf("decode stored status of edge %q: %w", e.ID, err)
		}
		e.Status = &st
	}
	return e, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// ListEdges returns edges ordered by id, one page at a time.
func (db *DB) ListEdges(ctx context.Context, p Page) ([]Edge, string, error) {
	after, err := decodeCursor(p.Cursor, cursorString)
	if err != nil {
		return nil, "", err
	}
	limit := p.limit(MaxPageLimit)
	rows, err := db.pool.Query(ctx, `SELECT `+edgeColumns+` FROM edges WHERE id > $1 ORDER BY id LIMIT $2`, after.s, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list edges: %w", err)
	}
	edges, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Edge, error) { return scanEdge(r) })
	if err != nil {
		return nil, "", fmt.Errorf("cannot list edges: %w", err)
	}
	edges, next := trimPage(edges, limit, func(e Edge) cursor { return cursor{kind: cursorString, s: e.ID} })
	return edges, next, nil
}

// GetEdge returns one edge; ErrNotFound when there is none.
func (db *DB) GetEdge(ctx context.Context, id string) (Edge, error) {
	e, err := scanEdge(db.pool.QueryRow(ctx, `SELECT `+edgeColumns+` FROM edges WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Edge{}, fmt.Errorf("edge %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Edge{}, fmt.Errorf("cannot get edge %q: %w", id, err)
	}
	return e, nil
}

// SaveStatus stores an edge's status report received at received, and
// marks the edge as seen. ErrNotFound when the edge does not exist.
func (db *DB) SaveStatus(ctx context.Context, edgeID string, st wire.Status, received time.Time) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("%w: status of edge %q cannot be encoded: %v", ErrInvalid, edgeID, err)
	}
	tag, err := db.pool.Exec(ctx, `UPDATE edges SET
		last_status = $2, status_at = $3, version = $4,
		last_seen = GREATEST(last_seen, $3),
		backlog_records = $5, backlog_bytes = $6, oldest_age_seconds = $7,
		runway_hours = $8, clock_offset_ms = $9
		WHERE id = $1`,
		edgeID, raw, received, st.Version, st.BacklogRecords, st.BacklogBytes,
		st.OldestAgeSeconds, st.RunwayHours, st.ClockOffsetMs)
	if err != nil {
		if strings.HasPrefix(pgCode(err), "22") {
			// Data exception, e.g. a NUL character jsonb refuses.
			return fmt.Errorf("%w: status of edge %q: %v", ErrInvalid, edgeID, err)
		}
		return fmt.Errorf("cannot save status of edge %q: %w", edgeID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("edge %q: %w", edgeID, ErrNotFound)
	}
	return nil
}
