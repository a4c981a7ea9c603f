package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/tern/v2/migrate"
)

// migrationStep is one versioned migration: plain SQL or a Go function.
type migrationStep struct {
	name string
	sql  string
	fn   func(ctx context.Context, conn *pgx.Conn) error
}

// Migrate brings the schema up to date. It is idempotent and safe to run
// from several collector processes at once (tern serialises them with an
// advisory lock). On plain PostgreSQL it also runs MaintainPartitions, so
// a freshly migrated database has its partitions.
func (db *DB) Migrate(ctx context.Context) error {
	steps, err := db.migrations()
	if err != nil {
		return fmt.Errorf("cannot load migrations: %w", err)
	}
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("cannot acquire connection for migrate: %w", err)
	}
	defer pc.Release()
	m, err := migrate.NewMigrator(ctx, pc.Conn(), migrationsTable)
	if err != nil {
		return fmt.Errorf("cannot prepare migrations: %w", err)
	}
	for i, s := range steps {
		mg := &migrate.Migration{Sequence: int32(i + 1), Name: s.name, UpSQL: s.sql}
		if s.fn != nil {
			mg.UpFunc = s.fn
			// 0002 manages its own transactions: TimescaleDB DDL is run
			// statement by statement, each idempotent.
			mg.DisableFuncTx = true
		}
		m.Migrations = append(m.Migrations, mg)
	}
	m.OnStart = func(seq int32, name, direction, _ string) {
		db.log.Info("applying migration", "sequence", seq, "name", name, "direction", direction)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("cannot migrate: %w", err)
	}
	layout, err := db.readLayout(ctx)
	if err != nil {
		return fmt.Errorf("cannot read readings layout after migrate: %w", err)
	}
	if layout != layoutTimescale && db.opts.Timescale == TimescaleRequire {
		return fmt.Errorf("timescale mode is %q but the readings table was created on plain PostgreSQL; migrate its data to a hypertable or set timescale to auto", TimescaleRequire)
	}
	db.setLayout(layout)
	if layout == layoutPartitioned {
		if err := db.MaintainPartitions(ctx, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// createReadings is migration 0002: it decides the readings layout from
// Options.Timescale and what the server offers, and creates the table.
func (db *DB) createReadings(ctx context.Context, conn *pgx.Conn) error {
	var existing string
	err := conn.QueryRow(ctx, `SELECT value FROM storage_settings WHERE key = 'readings_layout'`).Scan(&existing)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read readings layout: %w", err)
	}
	layout := existing
	if layout == "" {
		layout, err = db.chooseLayout(ctx, conn)
		if err != nil {
			return err
		}
	}
	switch layout {
	case layoutTimescale:
		for _, stmt := range timescaleSchema(db.opts.Retention) {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("timescaledb setup (%s): %w", firstLine(stmt), err)
			}
		}
	default:
		sql, err := migrationFS.ReadFile("migrations/readings_plain.sql")
		if err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("create partitioned readings: %w", err)
		}
	}
	_, err = conn.Exec(ctx, `INSERT INTO storage_settings (key, value) VALUES ('readings_layout', $1)
		ON CONFLICT (key) DO NOTHING`, layout)
	if err != nil {
		return fmt.Errorf("record readings layout: %w", err)
	}
	db.log.Info("readings layout", "layout", layout)
	return nil
}

// chooseLayout applies the Timescale mode: off → partitioned; require →
// timescale or an error; auto → timescale when the extension is available
// in pg_available_extensions and can be created, else partitioned.
func (db *DB) chooseLayout(ctx context.Context, conn *pgx.Conn) (string, error) {
	if db.opts.Timescale == TimescaleOff {
		return layoutPartitioned, nil
	}
	var available bool
	if err := conn.QueryRow(ctx, tsAvailable).Scan(&available); err != nil {
		return "", fmt.Errorf("check for timescaledb: %w", err)
	}
	if !available {
		if db.opts.Timescale == TimescaleRequire {
			return "", errors.New("timescale mode is \"require\" but the timescaledb extension is not available on this server")
		}
		db.log.Info("timescaledb not available; using partitioned PostgreSQL tables")
		return layoutPartitioned, nil
	}
	if _, err := conn.Exec(ctx, tsCreateExtension); err != nil {
		if db.opts.Timescale == TimescaleRequire {
			return "", fmt.Errorf("cannot enable timescaledb: %w", err)
		}
		db.log.Warn("timescaledb is available but cannot be enabled; using partitioned PostgreSQL tables", "err", err)
		return layoutPartitioned, nil
	}
	return layoutTimescale, nil
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}
