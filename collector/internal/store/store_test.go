package store

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// openTestDB opens a fresh migrated database.
func openTestDB(t testing.TB, opts Options) *DB {
	t.Helper()
	dsn := testenv.Postgres(t)
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	ctx := context.Background()
	db, err := Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

func TestMigrateFromEmptyAndIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	db, err := Open(ctx, dsn, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ready(ctx); err == nil {
		t.Fatal("Ready on an empty database = nil, want ErrNotMigrated")
	}
	for i := range 3 {
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("Migrate run %d: %v", i+1, err)
		}
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("Ready after migrate: %v", err)
	}
	// TimescaleDB is not installed on this machine: auto falls back.
	if db.Timescale() {
		t.Fatal("Timescale() = true on a server without the extension")
	}
	var tables int
	err = db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1)`,
		[]string{"sensors", "edges", "readings", "rejected_readings", "gaps", "edge_batches", "api_keys", "events", "readings_default"}).Scan(&tables)
	if err != nil {
		t.Fatal(err)
	}
	if tables != 9 {
		t.Fatalf("found %d of 9 tables", tables)
	}
	// A second process opening the migrated DB knows the layout.
	db2, err := Open(ctx, dsn, Options{Logger: testLogger(t), Timescale: TimescaleOff})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if err := db2.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	_ = time.Now
}

func TestTimescaleRequireFailsWithoutExtension(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	db, err := Open(ctx, dsn, Options{Logger: testLogger(t), Timescale: TimescaleRequire})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Migrate(ctx)
	if err == nil {
		t.Fatal("Migrate with timescale=require on a server without timescaledb succeeded")
	}
	t.Logf("error as a user sees it: %v", err)
}

func TestMigrationList(t *testing.T) {
	db := &DB{}
	steps, err := db.migrations()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.name)
		if (s.sql == "") == (s.fn == nil) {
			t.Errorf("step %s must have exactly one of SQL and a function", s.name)
		}
	}
	if len(names) < 2 || names[0] != "0001_core" || names[1] != "0002_readings" {
		t.Fatalf("migrations %v", names)
	}
}
