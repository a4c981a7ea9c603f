package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/smartmaint/smartmaint/shared/wire"
)

func TestPartitionCreationAndRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestDB(t, Options{Retention: 3 * 24 * time.Hour, PartitionsAhead: 2, Timescale: TimescaleOff})
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	if err := db.MaintainPartitions(ctx, now); err != nil {
		t.Fatal(err)
	}
	// Idempotent.
	if err := db.MaintainPartitions(ctx, now); err != nil {
		t.Fatal(err)
	}
	got := datedPartitions(t, db)
	// Migrate ran with the real clock; only look at March 2026.
	want := []string{"readings_p20260307", "readings_p20260308", "readings_p20260309", "readings_p20260310", "readings_p20260311", "readings_p20260312"}
	if diff := cmp.Diff(want, filterPrefix(got, "readings_p202603")); diff != "" {
		t.Fatalf("partitions after maintenance at %s (-want +got):\n%s", now, diff)
	}

	edge, _, err := db.RegisterEdge(ctx, "edge-p")
	if err != nil {
		t.Fatal(err)
	}
	metas, err := db.RegisterSensors(ctx, edge.ID, []string{"s/l/a/x"})
	if err != nil {
		t.Fatal(err)
	}
	num := metas["s/l/a/x"].Num
	at := func(d time.Time) wire.Reading {
		return wire.Reading{Sensor: "s/l/a/x", Time: d.UnixNano(), Value: 1, Seq: uint64(d.Unix())}
	}
	// One reading in a partition that will expire, one in today's, one far
	// ahead of every partition (lands in the default partition, must not
	// fail the batch).
	old := now.Add(-60 * time.Hour)
	farAhead := now.Add(10 * 24 * time.Hour)
	rs := []wire.Reading{at(old), at(now), at(farAhead)}
	res, err := db.WriteBatch(ctx, &BatchWrite{EdgeID: edge.ID, BatchID: "b1", Readings: rs, Nums: []int32{num, num, num}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 3 {
		t.Fatalf("accepted %d, want 3", res.Accepted)
	}
	if n := countRows(t, db, "readings_default"); n != 1 {
		t.Fatalf("default partition has %d rows, want 1 (the far-ahead reading)", n)
	}

	// Ten days later: the far-ahead day gets its partition and its row moves
	// there; everything older than 3 days is gone.
	later := now.Add(10 * 24 * time.Hour)
	if err := db.MaintainPartitions(ctx, later); err != nil {
		t.Fatal(err)
	}
	got = filterPrefix(datedPartitions(t, db), "readings_p202603")
	want = []string{"readings_p20260317", "readings_p20260318", "readings_p20260319", "readings_p20260320", "readings_p20260321", "readings_p20260322"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("partitions after maintenance at %s (-want +got):\n%s", later, diff)
	}
	if n := countRows(t, db, "readings_default"); n != 0 {
		t.Fatalf("default partition has %d rows after maintenance, want 0", n)
	}
	if n := countRows(t, db, "readings_p20260320"); n != 1 {
		t.Fatalf("partition of the far-ahead day has %d rows, want 1", n)
	}
	if n := countRows(t, db, "readings"); n != 1 {
		t.Fatalf("readings has %d rows, want 1 (the two older ones expired)", n)
	}
}

func TestMaintainExpiresDefaultPartitionRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestDB(t, Options{Retention: 2 * 24 * time.Hour, Timescale: TimescaleOff})
	edge, _, err := db.RegisterEdge(ctx, "edge-d")
	if err != nil {
		t.Fatal(err)
	}
	metas, err := db.RegisterSensors(ctx, edge.ID, []string{"a/b"})
	if err != nil {
		t.Fatal(err)
	}
	// A reading from 1999 has no partition: it lands in the default one.
	old := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = db.WriteBatch(ctx, &BatchWrite{EdgeID: edge.ID, BatchID: "b", Readings: []wire.Reading{{Sensor: "a/b", Time: old.UnixNano()}}, Nums: []int32{metas["a/b"].Num}})
	if err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "readings_default"); n != 1 {
		t.Fatalf("default rows %d, want 1", n)
	}
	if err := db.MaintainPartitions(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "readings_default"); n != 0 {
		t.Fatalf("default rows %d after maintenance, want 0", n)
	}
}

func datedPartitions(t *testing.T, db *DB) []string {
	t.Helper()
	names, err := listPartitions(context.Background(), db.pool)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(names, func(n string) bool { _, ok := partitionDay(n); return !ok })
}

func filterPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if len(n) >= len(prefix) && n[:len(prefix)] == prefix {
			out = append(out, n)
		}
	}
	return out
}

func countRows(t *testing.T, db *DB, table string) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRunMaintenanceRecreatesPartitions(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := openTestDB(t, Options{Timescale: TimescaleOff})
	tomorrow := partitionName(time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 1))
	if _, err := db.pool.Exec(ctx, `DROP TABLE `+tomorrow); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- db.RunMaintenance(ctx, time.Hour) }()
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(datedPartitions(t, db), tomorrow) {
		if time.Now().After(deadline) {
			t.Fatalf("RunMaintenance did not recreate %s", tomorrow)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunMaintenance after cancel: %v", err)
	}
}

// TestLongRetentionCreatesFewPartitions: years of retention must not mean
// one empty partition per day created in one transaction (that exhausted
// PostgreSQL's lock table); old days get a partition only when data for
// them arrives, and that data still lands and is kept.
func TestLongRetentionCreatesFewPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openTestDB(t, Options{Retention: 10 * 365 * 24 * time.Hour, PartitionsAhead: 2, Timescale: TimescaleOff})
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	if err := db.MaintainPartitions(ctx, now); err != nil {
		t.Fatal(err)
	}
	// Migrate ran with the real clock; only look at the months around now.
	if got := filterPrefix(datedPartitions(t, db), "readings_p20260"); len(got) != 6 {
		t.Fatalf("partitions before April 2026 after maintenance: %v, want 3 days back to 2 ahead", got)
	}
	edge, _, err := db.RegisterEdge(ctx, "edge-long")
	if err != nil {
		t.Fatal(err)
	}
	metas, err := db.RegisterSensors(ctx, edge.ID, []string{"s/l/a/x"})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC) // backfill, 9 months back
	r := wire.Reading{Sensor: "s/l/a/x", Time: old.UnixNano(), Value: 1, Seq: 1}
	if _, err := db.WriteBatch(ctx, &BatchWrite{EdgeID: edge.ID, BatchID: "b1", Readings: []wire.Reading{r}, Nums: []int32{metas["s/l/a/x"].Num}}); err != nil {
		t.Fatal(err)
	}
	if err := db.MaintainPartitions(ctx, now); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "readings_p20250601"); n != 1 {
		t.Fatalf("the backfilled day's partition has %d rows, want 1", n)
	}
	if n := countRows(t, db, "readings_default"); n != 0 {
		t.Fatalf("default partition has %d rows, want 0", n)
	}
}
