package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// partitionName is readings_pYYYYMMDD for the UTC day starting at day.
func partitionName(day time.Time) string {
	return "readings_p" + day.UTC().Format("20060102")
}

// partitionDay parses a partition name back to its day.
func partitionDay(name string) (time.Time, bool) {
	digits, ok := strings.CutPrefix(name, "readings_p")
	if !ok || len(digits) != 8 {
		return time.Time{}, false
	}
	d, err := time.Parse("20060102", digits)
	if err != nil {
		return time.Time{}, false
	}
	return d, true
}

// MaintainPartitions keeps the plain-PostgreSQL readings partitions in
// shape: it creates one partition per UTC day from partitionsBehind days
// before now (or the retention cutoff, if later) to PartitionsAhead days
// after now, plus one for every older day within retention that has rows
// in the default partition, drops partitions that lie wholly before
// the cutoff (now − retention), and deletes expired rows of the default
// partition and of edge_batches, rejected_readings and gaps. Rows that
// landed in the default partition for a day that now gets its own
// partition are moved into it. It is a no-op for readings on TimescaleDB
// (its retention policy does the work) but still expires the other tables.
//
// It is safe to run concurrently from several collectors: it takes a
// transaction-level advisory lock.
func (db *DB) MaintainPartitions(ctx context.Context, now time.Time) error {
	cutoff := now.Add(-db.opts.Retention)
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("cannot begin partition maintenance: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('smartmaint.maintain'))`); err != nil {
		return fmt.Errorf("cannot lock partition maintenance: %w", err)
	}
	for _, q := range []string{
		`DELETE FROM edge_batches WHERE received_at < $1`,
		`DELETE FROM rejected_readings WHERE received_at < $1`,
		`DELETE FROM gaps WHERE received_at < $1`,
	} {
		if _, err := tx.Exec(ctx, q, cutoff); err != nil {
			return fmt.Errorf("cannot expire rows (%s): %w", q, err)
		}
	}
	if !db.Timescale() {
		if err := db.maintainPlain(ctx, tx, now, cutoff); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("cannot commit partition maintenance: %w", err)
	}
	return nil
}

func (db *DB) maintainPlain(ctx context.Context, tx pgx.Tx, now, cutoff time.Time) error {
	existing, err := listPartitions(ctx, tx)
	if err != nil {
		return err
	}
	cutoffDay := cutoff.UTC().Truncate(24 * time.Hour)
	first := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -partitionsBehind)
	if first.Before(cutoffDay) {
		first = cutoffDay
	}
	last := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, db.opts.PartitionsAhead)
	// Older days get a partition only when rows of theirs wait in the
	// default partition (late or backfilled data): creating an empty
	// partition for every day of a long retention in one transaction
	// exhausts PostgreSQL's lock table (years of retention = thousands
	// of partitions).
	days, err := defaultPartitionDays(ctx, tx, cutoff, first)
	if err != nil {
		return err
	}
	var created, dropped []string
	// Drop whole partitions whose upper bound is at or before the cutoff.
	for _, name := range existing {
		day, ok := partitionDay(name)
		if !ok {
			continue
		}
		if !day.AddDate(0, 0, 1).After(cutoff) {
			if _, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{name}.Sanitize()); err != nil {
				return fmt.Errorf("cannot drop expired partition %s: %w", name, err)
			}
			dropped = append(dropped, name)
		}
	}
	for day := first; !day.After(last); day = day.AddDate(0, 0, 1) {
		days = append(days, day)
	}
	for _, day := range days {
		name := partitionName(day)
		if slices.Contains(existing, name) {
			continue
		}
		if err := createPartition(ctx, tx, name, day, day.AddDate(0, 0, 1)); err != nil {
			return err
		}
		created = append(created, name)
	}
	// Expired rows that landed in the default partition.
	if _, err := tx.Exec(ctx, `DELETE FROM readings_default WHERE time < $1`, cutoff); err != nil {
		return fmt.Errorf("cannot expire default partition rows: %w", err)
	}
	if len(created) > 0 || len(dropped) > 0 {
		db.log.Info("readings partitions maintained", "created", len(created), "dropped", len(dropped), "cutoff", cutoff.UTC())
	}
	return nil
}

// partitionsBehind is how many past days always have a partition, so
// readings arriving late (an edge draining a backlog of up to three days)
// go straight into one.
const partitionsBehind = 3

// defaultPartitionDays returns the UTC days in [from, to) that have rows in
// the default partition.
func defaultPartitionDays(ctx context.Context, tx pgx.Tx, from, to time.Time) ([]time.Time, error) {
	rows, err := tx.Query(ctx, `SELECT DISTINCT date_bin('1 day', time, TIMESTAMPTZ '2000-01-01 00:00:00+00')
		FROM readings_default WHERE time >= $1 AND time < $2 ORDER BY 1`, from, to)
	if err != nil {
		return nil, fmt.Errorf("cannot list days in the default partition: %w", err)
	}
	days, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (time.Time, error) {
		var d time.Time
		err := r.Scan(&d)
		return d.UTC(), err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list days in the default partition: %w", err)
	}
	return days, nil
}

// createPartition creates a detached table like readings, moves any rows
// of its range out of the default partition into it, and attaches it.
// Attaching validates the default partition, which holds no rows of the
// range any more.
func createPartition(ctx context.Context, tx pgx.Tx, name string, from, to time.Time) error {
	id := pgx.Identifier{name}.Sanitize()
	stmts := []struct {
		sql  string
		args []any
	}{
		{`CREATE TABLE ` + id + ` (LIKE readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`, nil},
		{`WITH moved AS (DELETE FROM readings_default WHERE time >= $1 AND time < $2 RETURNING *)
		  INSERT INTO ` + id + ` SELECT * FROM moved`, []any{from, to}},
		{fmt.Sprintf(`ALTER TABLE readings ATTACH PARTITION %s FOR VALUES FROM ('%s') TO ('%s')`,
			id, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339)), nil},
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
			return fmt.Errorf("cannot create partition %s: %w", name, err)
		}
	}
	return nil
}

// listPartitions returns the names of readings' partitions (default included).
func listPartitions(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = 'readings' AND p.relnamespace = to_regnamespace(current_schema())::oid
		ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("cannot list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("cannot list partitions: %w", err)
	}
	return names, nil
}

// DefaultMaintenanceInterval is how often RunMaintenance runs
// MaintainPartitions: hourly keeps days of partitions ahead with a wide
// margin and expires data within an hour of its retention.
const DefaultMaintenanceInterval = time.Hour

// RunMaintenance runs MaintainPartitions now and then every interval
// (DefaultMaintenanceInterval when ≤ 0) until ctx ends, which it returns
// as nil. A failed run is logged and retried at the next tick: the
// DEFAULT partition keeps ingest working meanwhile.
func (db *DB) RunMaintenance(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultMaintenanceInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := db.MaintainPartitions(ctx, time.Now()); err != nil && ctx.Err() == nil {
			db.log.Warn("partition maintenance failed; retrying at next tick", "err", err, "next", interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
