package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var sensorIDCases = []struct {
	id      string
	want    SensorPath
	wantErr bool
}{
	{"site1/line2/pump7/vib_x", SensorPath{"site1", "line2", "pump7", "vib_x"}, false},
	{"temp", SensorPath{Name: "temp"}, false},
	{"pump7/temp", SensorPath{Asset: "pump7", Name: "temp"}, false},
	{"s/pump7/temp", SensorPath{Site: "s", Asset: "pump7", Name: "temp"}, false},
	{"s/a/b/pump/x", SensorPath{"s", "a/b", "pump", "x"}, false},
	{"Werk Süd/Linie 1/Pumpe 7/Temperatur", SensorPath{"Werk Süd", "Linie 1", "Pumpe 7", "Temperatur"}, false},
	{"", SensorPath{}, true},
	{"a//b", SensorPath{}, true},
	{"/a", SensorPath{}, true},
	{"a/", SensorPath{}, true},
	{"a/ b", SensorPath{}, true},
	{"a/b\x00", SensorPath{}, true},
	{"a/b\n", SensorPath{}, true},
	{"a/\xff", SensorPath{}, true},
	{strings.Repeat("x", 257), SensorPath{}, true},
}

func TestParseSensorID(t *testing.T) {
	for _, tc := range sensorIDCases {
		got, err := ParseSensorID(tc.id)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseSensorID(%q) error = %v, want error %v", tc.id, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseSensorID(%q) (-want +got):\n%s", tc.id, diff)
		}
	}
}

func FuzzParseSensorID(f *testing.F) {
	for _, tc := range sensorIDCases {
		f.Add(tc.id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		p, err := ParseSensorID(id)
		if err != nil {
			return
		}
		// A valid id is rebuilt from its non-empty parts.
		var parts []string
		for _, s := range []string{p.Site, p.Line, p.Asset, p.Name} {
			if s != "" {
				parts = append(parts, s)
			}
		}
		if strings.Join(parts, "/") != id {
			t.Fatalf("ParseSensorID(%q) = %+v does not rebuild the id", id, p)
		}
		if p.Name == "" {
			t.Fatalf("ParseSensorID(%q) has no name", id)
		}
	})
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []cursor{
		{kind: cursorString, s: "site1/line1/pump1/temp"},
		{kind: cursorString, s: ""},
		{kind: cursorInt, i: 12345},
		{kind: cursorTime, i: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC).UnixNano()},
		{kind: cursorTime, i: -1},
	} {
		got, err := decodeCursor(encodeCursor(c), c.kind)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", c, err)
		}
		if got != c {
			t.Fatalf("round trip %+v → %+v", c, got)
		}
	}
	// A cursor of one listing is refused by another.
	if _, err := decodeCursor(encodeCursor(cursor{kind: cursorInt, i: 3}), cursorString); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cross-kind cursor: %v", err)
	}
	for _, bad := range []string{"!!", "dA", strings.Repeat("A", 600), "aQ"} {
		if _, err := decodeCursor(bad, cursorInt); !errors.Is(err, ErrInvalid) {
			t.Errorf("decodeCursor(%q): %v, want ErrInvalid", bad, err)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add("", byte(cursorString))
	f.Add(encodeCursor(cursor{kind: cursorString, s: "a/b"}), byte(cursorString))
	f.Add(encodeCursor(cursor{kind: cursorInt, i: 42}), byte(cursorInt))
	f.Add(encodeCursor(cursor{kind: cursorTime, i: 1 << 60}), byte(cursorTime))
	f.Add("!!", byte(cursorInt))
	f.Fuzz(func(t *testing.T, s string, kind byte) {
		c, err := decodeCursor(s, kind)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("decodeCursor(%q) error %v is not ErrInvalid", s, err)
			}
			return
		}
		if s == "" {
			return
		}
		// Every accepted cursor re-encodes to itself.
		if enc := encodeCursor(c); enc != s {
			t.Fatalf("decodeCursor(%q) = %+v re-encodes to %q", s, c, enc)
		}
	})
}

func TestTimescaleSchemaSQL(t *testing.T) {
	stmts := timescaleSchema(30 * 24 * time.Hour)
	want := []string{
		"CREATE TABLE IF NOT EXISTS readings (",
		"SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'), if_not_exists => TRUE)",
		"ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'sensor_id', timescaledb.compress_orderby = 'time DESC')",
		"SELECT add_compression_policy('readings', compress_after => INTERVAL '604800 seconds', if_not_exists => TRUE)",
		"SELECT add_retention_policy('readings', drop_after => INTERVAL '2592000 seconds', if_not_exists => TRUE)",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1m\nWITH (timescaledb.continuous, timescaledb.materialized_only = false) AS",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h\nWITH (timescaledb.continuous, timescaledb.materialized_only = false) AS",
		"SELECT add_continuous_aggregate_policy('readings_1m', start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE)",
		"SELECT add_continuous_aggregate_policy('readings_1h', start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE)",
		"SELECT add_retention_policy('readings_1m', drop_after => INTERVAL '2592000 seconds', if_not_exists => TRUE)",
		"SELECT add_retention_policy('readings_1h', drop_after => INTERVAL '31536000 seconds', if_not_exists => TRUE)",
	}
	if len(stmts) != len(want) {
		t.Fatalf("%d statements, want %d", len(stmts), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(stmts[i], want[i]) {
			t.Errorf("statement %d:\n got %s\nwant prefix %s", i, stmts[i], want[i])
		}
	}
	// The continuous aggregates bucket on the hypertable's time column per
	// sensor and are created empty (filled by their policies).
	for _, i := range []int{5, 6} {
		for _, frag := range []string{"time_bucket(INTERVAL '1 ", "GROUP BY sensor_id, bucket", "last(value, time)", "count(*)", "sum(value)", "WITH NO DATA"} {
			if !strings.Contains(stmts[i], frag) {
				t.Errorf("statement %d lacks %q:\n%s", i, frag, stmts[i])
			}
		}
	}
	// The raw table matches the plain layout column for column.
	plain, err := migrationFS.ReadFile("migrations/readings_plain.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"sensor_id integer NOT NULL", "time      timestamptz NOT NULL", "value     double precision NOT NULL", "flags     integer NOT NULL DEFAULT 0", "edge_num  integer", "seq       bigint", "PRIMARY KEY (sensor_id, time)"} {
		if !strings.Contains(stmts[0], col) || !strings.Contains(string(plain), col) {
			t.Errorf("column %q differs between layouts", col)
		}
	}
}

func TestTimescaleQueryChoice(t *testing.T) {
	for _, tc := range []struct {
		step time.Duration
		want string
	}{
		{10 * time.Second, ""},
		{90 * time.Second, ""},
		{time.Minute, cagg1m},
		{15 * time.Minute, cagg1m},
		{time.Hour, cagg1h},
		{24 * time.Hour, cagg1h},
		{90 * time.Minute, cagg1m},
	} {
		if got := tsCaggFor(tc.step); got != tc.want {
			t.Errorf("tsCaggFor(%s) = %q, want %q", tc.step, got, tc.want)
		}
	}
	q := tsBucketedFromCagg(cagg1h, AggAvg)
	for _, frag := range []string{"FROM readings_1h", "sum(sum_value) / sum(n)", "date_bin($4::interval, bucket, TIMESTAMPTZ '2000-01-03 00:00:00+00')", "bucket >= $2 AND bucket < $3"} {
		if !strings.Contains(q, frag) {
			t.Errorf("cagg query lacks %q:\n%s", frag, q)
		}
	}
	if tsBucketedFromCagg(cagg1m, "median") != "" {
		t.Error("unknown agg gives a query")
	}
}
