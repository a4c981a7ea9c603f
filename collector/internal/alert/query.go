package alert

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Filter narrows a listing; zero fields match everything. From/To bound
// the opening time (edge event time), [From, To).
type Filter struct {
	States     []State
	Severities []wire.Severity
	Site       string
	Asset      string
	Sensor     string
	From, To   time.Time
}

// AuditEntry is one row of the audit trail.
type AuditEntry struct {
	ID         int64
	At         time.Time
	Transition Transition
	Actor      string
	Note       string
	Severity   wire.Severity
	Value      *float64
	Score      *float32
}

// Reading is one recent reading of the alert's sensor.
type Reading struct {
	Time    time.Time
	Value   float64
	Quality wire.Quality
	Score   float32
	Flags   uint32
}

// MaxNote bounds a person's note (bytes).
const MaxNote = 2000

// RecentReadings is how many readings Get returns with an alert.
const RecentReadings = 100

const cursorPrefix = "alert:"

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if s, ok := strings.CutPrefix(string(b), cursorPrefix); ok {
			// Only the canonical form: one cursor per position.
			if id, err := strconv.ParseInt(s, 10, 64); err == nil && id > 0 && encodeCursor(id) == c {
				return id, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: cursor is not one this listing returned", ErrInvalid)
}

// List returns one page of alerts, newest first, and the next page's
// cursor ("" at the end).
func (p *Processor) List(ctx context.Context, f Filter, cursor string, limit int) ([]Alert, string, error) {
	var conds []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if cursor != "" {
		id, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		conds = append(conds, "id < "+arg(id))
	}
	if len(f.States) > 0 {
		ss := make([]string, len(f.States))
		for i, s := range f.States {
			ss[i] = string(s)
		}
		conds = append(conds, "state = ANY("+arg(ss)+")")
	}
	if len(f.Severities) > 0 {
		ss := make([]int16, len(f.Severities))
		for i, s := range f.Severities {
			ss[i] = int16(s)
		}
		conds = append(conds, "severity = ANY("+arg(ss)+")")
	}
	for col, v := range map[string]string{"site": f.Site, "asset": f.Asset, "sensor": f.Sensor} {
		if v != "" {
			conds = append(conds, col+" = "+arg(v))
		}
	}
	if !f.From.IsZero() {
		conds = append(conds, "opened_at >= "+arg(f.From))
	}
	if !f.To.IsZero() {
		conds = append(conds, "opened_at < "+arg(f.To))
	}
	q := `SELECT ` + alertCols + ` FROM alerts`
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	q += " ORDER BY id DESC LIMIT " + arg(limit+1)
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, "", fmt.Errorf("cannot list alerts: %w", err)
		}
		out = append(out, *a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("cannot list alerts: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = encodeCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// Get returns an alert with its audit trail (oldest first) and the most
// recent readings of its sensor (newest first).
func (p *Processor) Get(ctx context.Context, id int64) (*Alert, []AuditEntry, []Reading, error) {
	a, err := scanAlert(p.pool.QueryRow(ctx, `SELECT `+alertCols+` FROM alerts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot read alert %d: %w", id, err)
	}
	rows, err := p.pool.Query(ctx, `SELECT id, at, transition, actor, note, severity, value, score
		FROM alert_events WHERE alert_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot read audit trail of alert %d: %w", id, err)
	}
	var audit []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var sev int16
		if err := rows.Scan(&e.ID, &e.At, &e.Transition, &e.Actor, &e.Note, &sev, &e.Value, &e.Score); err != nil {
			rows.Close()
			return nil, nil, nil, fmt.Errorf("cannot read audit trail of alert %d: %w", id, err)
		}
		e.Severity, e.At = wire.Severity(sev), e.At.UTC()
		audit = append(audit, e)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("cannot read audit trail of alert %d: %w", id, err)
	}
	rows, err = p.pool.Query(ctx, `SELECT r.time, r.value, r.quality, coalesce(r.score, 0), r.flags FROM readings r
		WHERE r.sensor_id = (SELECT num FROM sensors WHERE id = $1) ORDER BY r.time DESC LIMIT $2`, a.Sensor, RecentReadings)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot read readings of alert %d: %w", id, err)
	}
	var rs []Reading
	for rows.Next() {
		var r Reading
		var q int16
		var flags int32
		if err := rows.Scan(&r.Time, &r.Value, &q, &r.Score, &flags); err != nil {
			rows.Close()
			return nil, nil, nil, fmt.Errorf("cannot read readings of alert %d: %w", id, err)
		}
		r.Time, r.Quality, r.Flags = r.Time.UTC(), wire.Quality(q), uint32(flags)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("cannot read readings of alert %d: %w", id, err)
	}
	return a, audit, rs, nil
}

// Act applies a person's transition (Acknowledged or Resolved) to alert
// id, recording who and note, and queues its notifications, in one
// transaction. Errors: ErrNotFound, ErrState (wrong state), ErrInvalid
// (bad note or actor).
func (p *Processor) Act(ctx context.Context, id int64, tr Transition, who, note string) (*Alert, error) {
	if who == "" {
		return nil, fmt.Errorf("%w: empty actor", ErrInvalid)
	}
	if len(note) > MaxNote || !utf8.ValidString(note) || strings.ContainsRune(note, 0) {
		return nil, fmt.Errorf("%w: note must be valid UTF-8 text of at most %d bytes", ErrInvalid, MaxNote)
	}
	var out *Alert
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		a, err := scanAlert(tx.QueryRow(ctx, `SELECT `+alertCols+` FROM alerts WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("cannot read alert %d: %w", id, err)
		}
		now := p.cfg.Now().UTC()
		if err := Act(a, tr, who, now); err != nil {
			return err
		}
		if err := updateAlert(ctx, tx, a); err != nil {
			return err
		}
		if err := p.record(ctx, tx, a, tr, who, note, now); err != nil {
			return err
		}
		out = a
		return nil
	})
	return out, err
}
