// Package store is the collector's data layer: a pgx connection pool over
// PostgreSQL (plain 14+, or TimescaleDB when available), versioned SQL
// migrations embedded in the binary, partition maintenance, credentials
// (edge tokens and API keys, stored only as SHA-256 hashes), the batch write
// path used by ingest, and the queries behind the data API.
//
// Storage layout. readings is keyed by (sensor_id, time), where sensor_id
// is the compact sensors.num. On plain PostgreSQL it is range-partitioned by
// day (see partitions.go); with TimescaleDB it is a hypertable with
// compression, retention and 1 min / 1 h continuous aggregates (every
// TimescaleDB statement is in timescale.go). The layout is chosen once, when
// the readings table is first created, and remembered in storage_settings.
//
// Secrets are never logged and never part of an error text.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors.
var (
	// ErrNotFound: the requested row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnauthenticated: the secret is unknown, malformed or revoked.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrNotMigrated: the database schema is missing or older than this binary.
	ErrNotMigrated = errors.New("database schema not migrated")
	// ErrConflict: a row with the same unique name already exists.
	ErrConflict = errors.New("already exists")
	// ErrInvalid: an argument is malformed (the error text says which).
	ErrInvalid = errors.New("invalid argument")
)

// Timescale modes for Options.Timescale.
const (
	TimescaleAuto    = "auto"    // use TimescaleDB when the extension is available
	TimescaleRequire = "require" // fail when TimescaleDB cannot be used
	TimescaleOff     = "off"     // always use plain PostgreSQL partitioning
)

// Readings layouts, as remembered in storage_settings.
const (
	layoutPartitioned = "partitioned"
	layoutTimescale   = "timescale"
)

// DefaultRetention is how long raw readings are kept when Options.Retention
// is zero: 30 days covers the usual "compare with last month" question and
// model training windows, while bounding a mid-size fleet's table to a few
// hundred GB. Longer trends live in the 1 h aggregate (TimescaleDB).
const DefaultRetention = 30 * 24 * time.Hour

// DefaultPartitionsAhead is how many daily partitions MaintainPartitions
// keeps ahead of today: three days survive a long weekend without
// maintenance before readings land in the default partition.
const DefaultPartitionsAhead = 3

// DefaultMaxConns is the pool size when Options.MaxConns is zero: ingest
// takes at most half of it (see ingest.Config.MaxInFlight), leaving the
// rest for queries, status reports and maintenance.
const DefaultMaxConns = 16

// Options configure Open.
type Options struct {
	// Timescale is TimescaleAuto (default when empty), TimescaleRequire or
	// TimescaleOff.
	Timescale string
	// Retention of raw readings; DefaultRetention when zero.
	Retention time.Duration
	// PartitionsAhead is the number of future daily partitions to keep
	// (plain PostgreSQL); DefaultPartitionsAhead when zero.
	PartitionsAhead int
	// WriteMethod is WriteCopy (default), WriteStaging or WriteUnnest.
	WriteMethod string
	// MaxConns caps the pool; DefaultMaxConns when zero.
	MaxConns int32
	// Logger receives lifecycle messages; required.
	Logger *slog.Logger
}

// DB is the collector's database handle. It is safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	opts   Options
	log    *slog.Logger
	mu     sync.RWMutex
	layout string // "" until known (after Migrate, or Open on a migrated DB)

	edgeMu   sync.RWMutex
	edgeNums map[string]int32 // edge id → num; nums never change
	bufs     sync.Pool        // *copyBuf
	// dedupHint counts batches that skip the direct COPY (see WriteCopy).
	dedupHint atomic.Int32
}

//go:embed migrations/*.sql
var migrationFS embed.FS

// Open connects to dsn and checks the connection. It does not migrate.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	switch opts.Timescale {
	case "":
		opts.Timescale = TimescaleAuto
	case TimescaleAuto, TimescaleRequire, TimescaleOff:
	default:
		return nil, fmt.Errorf("%w: timescale mode %q (want auto, require or off)", ErrInvalid, opts.Timescale)
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Retention < 24*time.Hour {
		return nil, fmt.Errorf("%w: retention %s is shorter than one day", ErrInvalid, opts.Retention)
	}
	switch opts.WriteMethod {
	case "":
		opts.WriteMethod = WriteCopy
	case WriteCopy, WriteStaging, WriteUnnest:
	default:
		return nil, fmt.Errorf("%w: write method %q (want copy, staging or unnest)", ErrInvalid, opts.WriteMethod)
	}
	if opts.PartitionsAhead <= 0 {
		opts.PartitionsAhead = DefaultPartitionsAhead
	}
	if opts.Logger == nil {
		return nil, fmt.Errorf("%w: Options.Logger is nil", ErrInvalid)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can echo the DSN, password included.
		return nil, errors.New("cannot parse database URL (check its syntax)")
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	cfg.MaxConns = opts.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot create database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot connect to database %s@%s/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	db := &DB{
		pool:     pool,
		opts:     opts,
		log:      opts.Logger.With("component", "store"),
		edgeNums: make(map[string]int32),
	}
	if layout, err := db.readLayout(ctx); err == nil {
		db.setLayout(layout)
	}
	return db, nil
}

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// Pool exposes the pool for packages of the collector that add their own
// tables (alerts, outbox) and for benchmarks.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// MaxConns is the pool size.
func (db *DB) MaxConns() int { return int(db.opts.MaxConns) }

// Retention is the configured raw-data retention.
func (db *DB) Retention() time.Duration { return db.opts.Retention }

// Timescale reports whether readings live in a TimescaleDB hypertable. It
// is false until the layout is known (after Migrate).
func (db *DB) Timescale() bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.layout == layoutTimescale
}

func (db *DB) setLayout(l string) {
	db.mu.Lock()
	db.layout = l
	db.mu.Unlock()
}

func (db *DB) readLayout(ctx context.Context) (string, error) {
	var v string
	err := db.pool.QueryRow(ctx, `SELECT value FROM storage_settings WHERE key = 'readings_layout'`).Scan(&v)
	if err != nil {
		return "", err
	}
	return v, nil
}

// migrationsTable is tern's version table.
const migrationsTable = "public.schema_version"

// migrations returns the ordered migrations: every migrations/NNNN_name.sql
// file as version NNNN, applied as written (no templating), except version
// 2, which is the Go step createReadings (its layout depends on the
// timescale mode). Versions must be contiguous. To add a migration, drop
// the next-numbered file into migrations/.
func (db *DB) migrations() ([]*migrationStep, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	files := map[int]string{}
	maxVersion := 2
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(name, "_")
		if !ok || len(num) != 4 || !strings.HasSuffix(rest, ".sql") {
			continue // e.g. readings_plain.sql, used by step 2
		}
		v, err := strconv.Atoi(num)
		if err != nil || v < 1 || v == 2 {
			return nil, fmt.Errorf("migration file %s: bad version number", name)
		}
		if _, dup := files[v]; dup {
			return nil, fmt.Errorf("migration file %s: version %d used twice", name, v)
		}
		files[v] = name
		maxVersion = max(maxVersion, v)
	}
	steps := make([]*migrationStep, 0, maxVersion)
	for v := 1; v <= maxVersion; v++ {
		if v == 2 {
			steps = append(steps, &migrationStep{name: "0002_readings", fn: db.createReadings})
			continue
		}
		name, ok := files[v]
		if !ok {
			return nil, fmt.Errorf("migration version %d is missing from migrations/", v)
		}
		sql, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		steps = append(steps, &migrationStep{name: strings.TrimSuffix(name, ".sql"), sql: string(sql)})
	}
	return steps, nil
}

// Ready reports whether the database is reachable and fully migrated.
func (db *DB) Ready(ctx context.Context) error {
	var v int32
	err := db.pool.QueryRow(ctx, `SELECT version FROM `+migrationsTable).Scan(&v)
	if err != nil {
		if isUndefinedTable(err) || errors.Is(err, pgx.ErrNoRows) {
			return ErrNotMigrated
		}
		return fmt.Errorf("cannot query schema version: %w", err)
	}
	steps, err := db.migrations()
	if err != nil {
		return err
	}
	if int(v) < len(steps) {
		return fmt.Errorf("%w: at version %d of %d", ErrNotMigrated, v, len(steps))
	}
	return nil
}
