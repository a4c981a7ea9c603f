package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// seedSeries stores 60 readings of one sensor, every 10 s from t0, with
// value i for the i-th reading.
func seedSeries(t *testing.T, db *DB, t0 time.Time) string {
	t.Helper()
	ctx := context.Background()
	edge, _, err := db.RegisterEdge(ctx, "edge-q")
	if err != nil {
		t.Fatal(err)
	}
	const id = "site1/line1/pump1/temp"
	metas, err := db.RegisterSensors(ctx, edge.ID, []string{id, "site1/line1/pump1/vib", "site2/line1/fan1/temp"})
	if err != nil {
		t.Fatal(err)
	}
	w := &BatchWrite{EdgeID: edge.ID, BatchID: "seed"}
	for i := range 60 {
		w.Readings = append(w.Readings, wire.Reading{Sensor: id, Time: t0.Add(time.Duration(i) * 10 * time.Second).UnixNano(), Value: float64(i), Seq: uint64(i + 1), Quality: wire.QualityGood, Score: 0.25, Model: "ewma@1"})
		w.Nums = append(w.Nums, metas[id].Num)
	}
	if _, err := db.WriteBatch(ctx, w); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestReadingsBuckets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestDB(t, Options{Timescale: TimescaleOff})
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	id := seedSeries(t, db, t0)
	to := t0.Add(10 * time.Minute)

	bucket := func(k int, v float64) Point {
		return Point{Sensor: id, Time: t0.Add(time.Duration(k) * time.Minute), Value: v, Count: 6}
	}
	tests := []struct {
		agg  string
		want func(k int) float64
	}{
		{AggAvg, func(k int) float64 { return float64(6*k) + 2.5 }},
		{AggMin, func(k int) float64 { return float64(6 * k) }},
		{AggMax, func(k int) float64 { return float64(6*k + 5) }},
		{AggCount, func(k int) float64 { return 6 }},
		{AggLast, func(k int) float64 { return float64(6*k + 5) }},
	}
	for _, tc := range tests {
		t.Run(tc.agg, func(t *testing.T) {
			var want []Point
			for k := range 10 {
				want = append(want, bucket(k, tc.want(k)))
			}
			// Page through three buckets at a time.
			var got []Point
			cur := ""
			for range 20 {
				pts, next, err := db.Readings(ctx, ReadingsQuery{Sensor: id, From: t0, To: to, Step: time.Minute, Agg: tc.agg}, Page{Cursor: cur, Limit: 3})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, pts...)
				if next == "" {
					break
				}
				cur = next
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("buckets (-want +got):\n%s", diff)
			}
		})
	}

	// A 5-minute step over a window starting mid-bucket: the first bucket
	// holds only the readings at or after From.
	pts, _, err := db.Readings(ctx, ReadingsQuery{Sensor: id, From: t0.Add(4 * time.Minute), To: to, Step: 5 * time.Minute, Agg: AggCount}, Page{})
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := []Point{
		{Sensor: id, Time: t0, Value: 6, Count: 6},
		{Sensor: id, Time: t0.Add(5 * time.Minute), Value: 30, Count: 30},
	}
	if diff := cmp.Diff(wantCounts, pts); diff != "" {
		t.Fatalf("5-minute buckets (-want +got):\n%s", diff)
	}

	// Raw readings, paged.
	var raw []Point
	cur := ""
	for range 20 {
		pts, next, err := db.Readings(ctx, ReadingsQuery{Sensor: id, From: t0, To: to}, Page{Cursor: cur, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, pts...)
		if next == "" {
			break
		}
		cur = next
	}
	if len(raw) != 60 {
		t.Fatalf("raw readings: %d, want 60", len(raw))
	}
	for i, p := range raw {
		want := Point{Sensor: id, Time: t0.Add(time.Duration(i) * 10 * time.Second), Value: float64(i), Count: 1, Score: 0.25, Model: "ewma@1"}
		if diff := cmp.Diff(want, p); diff != "" {
			t.Fatalf("raw reading %d (-want +got):\n%s", i, diff)
		}
	}

	latest, err := db.LatestReadings(ctx, []string{"site1/line1/pump1/vib", id, "no/such"})
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 1 || latest[0].Value != 59 || !latest[0].Time.Equal(t0.Add(590*time.Second)) {
		t.Fatalf("latest = %+v", latest)
	}

	// Errors a caller can act on.
	for name, q := range map[string]ReadingsQuery{
		"from after to": {Sensor: id, From: to, To: t0},
		"bad agg":       {Sensor: id, From: t0, To: to, Step: time.Minute, Agg: "median"},
		"too many":      {Sensor: id, From: t0, To: t0.Add(365 * 24 * time.Hour), Step: time.Millisecond},
	} {
		if _, _, err := db.Readings(ctx, q, Page{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := db.Readings(ctx, ReadingsQuery{Sensor: "no/such", From: t0, To: to}, Page{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown sensor: %v, want ErrNotFound", err)
	}
	if _, _, err := db.Readings(ctx, ReadingsQuery{Sensor: id, From: t0, To: to}, Page{Cursor: "garbage!"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad cursor: %v, want ErrInvalid", err)
	}
}

func TestListSensors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestDB(t, Options{Timescale: TimescaleOff})
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	id := seedSeries(t, db, t0)
	lo, hi := 0.0, 100.0
	if err := db.UpsertSensor(ctx, Sensor{ID: "site2/line1/fan1/temp", Type: "temperature", Unit: "°C", RangeMin: &lo, RangeMax: &hi, RangePolicy: RangeReject}); err != nil {
		t.Fatal(err)
	}
	all, next, err := db.ListSensors(ctx, SensorFilter{}, Page{Limit: 2})
	if err != nil || len(all) != 2 || next == "" {
		t.Fatalf("first page: %d sensors, next %q, %v", len(all), next, err)
	}
	rest, next2, err := db.ListSensors(ctx, SensorFilter{}, Page{Cursor: next, Limit: 2})
	if err != nil || len(rest) != 1 || next2 != "" {
		t.Fatalf("second page: %d sensors, next %q, %v", len(rest), next2, err)
	}
	if all[0].ID != id || all[0].LastValue == nil || *all[0].LastValue != 59 || all[0].Site != "site1" || all[0].Asset != "pump1" || all[0].Name != "temp" {
		t.Fatalf("first sensor %+v", all[0])
	}
	got, _, err := db.ListSensors(ctx, SensorFilter{Site: "site2", Type: "temperature"}, Page{})
	if err != nil || len(got) != 1 || got[0].Unit != "°C" || *got[0].RangeMax != 100 || got[0].RangePolicy != RangeReject {
		t.Fatalf("filtered: %+v %v", got, err)
	}
	got, _, err = db.ListSensors(ctx, SensorFilter{EdgeID: "edge-q", Asset: "pump1"}, Page{})
	if err != nil || len(got) != 2 {
		t.Fatalf("by edge and asset: %d, %v", len(got), err)
	}
	s, err := db.GetSensor(ctx, id)
	if err != nil || s.LastTime.IsZero() || !s.AutoRegistered {
		t.Fatalf("GetSensor: %+v %v", s, err)
	}
	if _, err := db.GetSensor(ctx, "x/y"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSensor(unknown): %v", err)
	}
}
