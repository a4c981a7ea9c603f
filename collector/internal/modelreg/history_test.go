package modelreg

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

var nan = math.NaN()

var csvCases = []struct {
	name    string
	in      string
	want    *Table
	skipped []string
	err     string
}{
	{name: "two sensors", in: "time,a,b\n2026-01-01T00:00:00Z,1,2\n2026-01-01 00:00:01,3,\n",
		want: &Table{Sensors: []string{"a", "b"}, Times: []int64{1767225600e9, 1767225601e9}, Rows: [][]float64{{1, 2}, {3, nan}}}},
	{name: "bad cells and rows are skipped with their line", in: "t,a\n2026-01-01T00:00:00Z,1\nyesterday,2\n2026-01-01T00:00:02Z,abc\n2026-01-01T00:00:01Z,4\n2026-01-01T00:00:03Z,5,6\n",
		want: &Table{Sensors: []string{"a"}, Times: []int64{1767225600e9, 1767225602e9}, Rows: [][]float64{{1}, {nan}}},
		skipped: []string{
			`in.csv:3: timestamp "yesterday" is neither RFC 3339 nor YYYY-MM-DD HH:MM:SS`,
			`in.csv:4: column "a": "abc" is not a number (treated as missing)`,
			`in.csv:5: timestamp 2026-01-01T00:00:01Z is not after the previous row`,
			`in.csv:6: 3 fields, header has 2`,
		}},
	{name: "semicolons", in: "time;a\n2026-01-01T00:00:00Z;1.5\n",
		want: &Table{Sensors: []string{"a"}, Times: []int64{1767225600e9}, Rows: [][]float64{{1.5}}}},
	{name: "empty", in: "", err: "in.csv: empty file"},
	{name: "header only timestamp", in: "time\n", err: "in.csv:1: header has 1 column"},
	{name: "duplicate column", in: "t,a,a\n", err: `column "a" appears twice`},
	{name: "no rows", in: "t,a\n", err: "no usable data rows"},
}

func TestReadCSV(t *testing.T) {
	for _, c := range csvCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadCSV(strings.NewReader(c.in), "in.csv", nil)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error = %v, want containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.want.Skipped, c.want.SkippedCount = c.skipped, len(c.skipped)
			if diff := cmp.Diff(c.want, got, cmpopts.EquateNaNs(), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzReadCSV(f *testing.F) {
	for _, c := range csvCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tab, err := ReadCSV(strings.NewReader(in), "f.csv", nil)
		if err != nil {
			return
		}
		for i, r := range tab.Rows {
			if len(r) != len(tab.Sensors) {
				t.Fatalf("row %d has %d values for %d sensors", i, len(r), len(tab.Sensors))
			}
			if i > 0 && tab.Times[i] <= tab.Times[i-1] {
				t.Fatalf("times not ascending at row %d", i)
			}
			for _, v := range r {
				if math.IsInf(v, 0) {
					t.Fatalf("infinite value kept")
				}
			}
		}
	})
}

func TestPrivateKeyRoundTrip(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	back, err := ParsePrivateKey([]byte(FormatPrivateKey(priv)))
	if err != nil || !back.Equal(priv) {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "ed25519:AAAA", "ed25519-seed:!!", "ed25519-seed:AAAA"} {
		if _, err := ParsePrivateKey([]byte(bad)); err == nil {
			t.Errorf("ParsePrivateKey(%q) accepted", bad)
		}
	}
}

// migrateStore gives the database at dsn the collector's real schema, so
// LoadHistory is tested against the tables it reads in production.
// Readings older than the default retention land in the DEFAULT partition,
// which LoadHistory reads all the same.
func migrateStore(t *testing.T, ctx context.Context, dsn string) {
	t.Helper()
	db, err := store.Open(ctx, dsn, store.Options{Timescale: store.TimescaleOff, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLoadHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	migrateStore(t, ctx, dsn)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if _, err := pool.Exec(ctx, `INSERT INTO sensors (id) VALUES ('p/vib'), ('p/temp'), ('other')`); err != nil {
		t.Fatal(err)
	}
	// vib every second, temp every 2 s, other sensor noise, one reading outside the window.
	_, err = pool.Exec(ctx, `
		INSERT INTO readings (sensor_id, time, value)
		SELECT (SELECT num FROM sensors WHERE id = 'p/vib'), $1::timestamptz + make_interval(secs => g), g FROM generate_series(0, 9) g`, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO readings (sensor_id, time, value)
		SELECT (SELECT num FROM sensors WHERE id = 'p/temp'), $1::timestamptz + make_interval(secs => g), 100 + g FROM generate_series(0, 10, 2) g`, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO readings (sensor_id, time, value) SELECT (SELECT num FROM sensors WHERE id = 'other'), $1, 7`, t0)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := LoadHistory(ctx, pool, HistoryQuery{Sensors: []string{"p/vib", "p/temp"}, From: t0, To: t0.Add(10 * time.Second)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Rows) != 10 || raw.Rows[0][0] != 0 || raw.Rows[0][1] != 100 || !math.IsNaN(raw.Rows[1][1]) || raw.Rows[9][0] != 9 {
		t.Fatalf("raw rows = %v", raw.Rows)
	}
	binned, err := LoadHistory(ctx, pool, HistoryQuery{Sensors: []string{"p/vib", "p/temp"}, From: t0, To: t0.Add(10 * time.Second), Step: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float64{{0.5, 100}, {2.5, 102}, {4.5, 104}, {6.5, 106}, {8.5, 108}}
	if diff := cmp.Diff(want, binned.Rows); diff != "" {
		t.Fatalf("binned rows (-want +got):\n%s", diff)
	}
	if binned.Times[1]-binned.Times[0] != int64(2*time.Second) {
		t.Fatalf("bucket spacing %d", binned.Times[1]-binned.Times[0])
	}
	if _, err := LoadHistory(ctx, pool, HistoryQuery{Sensors: []string{"p/vib", "nope"}, From: t0, To: t0.Add(time.Hour)}, nil); err == nil || !strings.Contains(err.Error(), "unknown sensor(s): nope") {
		t.Fatalf("unknown sensor error = %v", err)
	}
	if _, err := LoadHistory(ctx, pool, HistoryQuery{Sensors: []string{"p/vib"}, From: t0.Add(time.Hour), To: t0.Add(2 * time.Hour)}, nil); err == nil || !strings.Contains(err.Error(), "no readings") {
		t.Fatalf("empty window error = %v", err)
	}
}
