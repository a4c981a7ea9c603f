package ingest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// benchSensors × benchSteps readings make one batch of 1,000 readings, the
// size an edge sends when it keeps up with a live plant.
const (
	benchSensors = 100
	benchSteps   = 10
)

// BenchmarkIngestVsRawCopy measures sustained ingest through Service.Ingest
// (validation, dedup, batch record, dead letters, one
// transaction per batch) into PostgreSQL against raw pgx COPY (CopyFrom,
// no dedup, no bookkeeping) of the same number of readings into the same
// readings table, alternating batch by batch in the same run. It reports
// both rates and their ratio. The "dups" variants re-send 1 % of each
// batch, so every batch has duplicates (WriteCopy then takes its fallback).
func BenchmarkIngestVsRawCopy(b *testing.B) {
	for _, bc := range []struct {
		name   string
		method string
		dups   bool
	}{
		{"copy", store.WriteCopy, false},
		{"staging", store.WriteStaging, false},
		{"unnest", store.WriteUnnest, false},
		{"copy_dups", store.WriteCopy, true},
		{"staging_dups", store.WriteStaging, true},
	} {
		b.Run(bc.name, func(b *testing.B) { benchIngest(b, bc.method, bc.dups) })
	}
}

func benchIngest(b *testing.B, method string, dups bool) {
	ctx := context.Background()
	f := newFixture(b, store.Options{WriteMethod: method}, Config{Now: time.Now})
	edge := f.edge(b, "bench-edge")
	ids := make([]string, benchSensors)
	rawIDs := make([]string, benchSensors)
	for i := range ids {
		ids[i] = fmt.Sprintf("site1/line1/asset%02d/s%03d", i%10, i)
		rawIDs[i] = fmt.Sprintf("site1/line1/raw%02d/s%03d", i%10, i)
	}
	metas, err := f.db.RegisterSensors(ctx, edge, append(slices.Clone(ids), rawIDs...))
	if err != nil {
		b.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)

	base := time.Now().Add(-20 * time.Hour).UnixNano()
	batch := &wire.Batch{EdgeID: edge, Readings: make([]wire.Reading, 0, benchSensors*benchSteps)}
	rows := make([][]any, benchSensors*benchSteps)
	var ingestDur, rawDur time.Duration
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; b.Loop(); n++ {
		batch.Reset()
		batch.EdgeID = edge
		batch.BatchID = fmt.Sprintf("batch-%d", n)
		for step := range benchSteps {
			ts := base + int64(n*benchSteps+step)*int64(time.Millisecond)
			if dups && n > 0 && step == 0 {
				// Re-send the previous batch's last step for 10 sensors.
				ts -= int64(time.Millisecond)
			}
			for s := range benchSensors {
				seq++
				if dups && n > 0 && step == 0 && s >= 10 {
					ts2 := base + int64(n*benchSteps)*int64(time.Millisecond)
					batch.Readings = append(batch.Readings, wire.Reading{Sensor: ids[s], Time: ts2, Value: float64(s), Seq: seq, Score: 0.1, Model: "ewma@1"})
					continue
				}
				batch.Readings = append(batch.Readings, wire.Reading{Sensor: ids[s], Time: ts, Value: float64(s), Seq: seq, Score: 0.1, Model: "ewma@1"})
			}
		}
		start := time.Now()
		resp, err := f.svc.Ingest(ctx, edge, batch)
		ingestDur += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if resp.Rejected != 0 || (!dups && resp.Accepted != len(batch.Readings)) {
			b.Fatalf("batch %d: %+v", n, resp)
		}

		// The same number of readings by raw pgx COPY.
		i := 0
		for step := range benchSteps {
			ts := time.Unix(0, base+int64(n*benchSteps+step)*int64(time.Millisecond))
			for s := range benchSensors {
				rows[i] = []any{metas[rawIDs[s]].Num, ts, float64(s), int16(0), int32(0), float32(0.1), "ewma@1", int32(1), int64(seq)}
				i++
			}
		}
		start = time.Now()
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"readings"},
			[]string{"sensor_id", "time", "value", "quality", "flags", "score", "model", "edge_num", "seq"},
			pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		rawDur += time.Since(start)
	}
	total := float64(b.N * benchSensors * benchSteps)
	ingestRate := total / ingestDur.Seconds()
	rawRate := total / rawDur.Seconds()
	b.ReportMetric(ingestRate, "ingest_readings/s")
	b.ReportMetric(rawRate, "rawcopy_readings/s")
	b.ReportMetric(ingestRate/rawRate, "ratio")
}

// BenchmarkIngest is Service.Ingest alone (default write method, no
// duplicates), to show its allocations per batch of 1,000 readings.
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, store.Options{}, Config{Now: time.Now})
	edge := f.edge(b, "bench-edge")
	ids := make([]string, benchSensors)
	for i := range ids {
		ids[i] = fmt.Sprintf("site1/line1/asset%02d/s%03d", i%10, i)
	}
	base := time.Now().Add(-20 * time.Hour).UnixNano()
	batch := &wire.Batch{Readings: make([]wire.Reading, 0, benchSensors*benchSteps)}
	var seq uint64
	b.ReportAllocs()
	for n := 0; b.Loop(); n++ {
		batch.Reset()
		batch.EdgeID = edge
		batch.BatchID = "batch-" + strconv.Itoa(n)
		for step := range benchSteps {
			ts := base + int64(n*benchSteps+step)*int64(time.Millisecond)
			for s := range benchSensors {
				seq++
				batch.Readings = append(batch.Readings, wire.Reading{Sensor: ids[s], Time: ts, Value: float64(s), Seq: seq})
			}
		}
		if _, err := f.svc.Ingest(ctx, edge, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchSensors*benchSteps)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkIngestLatencyHalfLoad measures the latency of one 1,000-reading
// batch through Service.Ingest when batches arrive at half the sustained
// rate: it first measures that rate over 30 batches, then sends b.N
// batches paced at half of it and reports p50 and p99.
func BenchmarkIngestLatencyHalfLoad(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, store.Options{}, Config{Now: time.Now})
	edge := f.edge(b, "bench-edge")
	ids := make([]string, benchSensors)
	for i := range ids {
		ids[i] = fmt.Sprintf("site1/line1/asset%02d/s%03d", i%10, i)
	}
	base := time.Now().Add(-20 * time.Hour).UnixNano()
	batch := &wire.Batch{Readings: make([]wire.Reading, 0, benchSensors*benchSteps)}
	n := 0
	send := func() time.Duration {
		batch.Reset()
		batch.BatchID = "batch-" + strconv.Itoa(n)
		for step := range benchSteps {
			ts := base + int64(n*benchSteps+step)*int64(time.Millisecond)
			for s := range benchSensors {
				batch.Readings = append(batch.Readings, wire.Reading{Sensor: ids[s], Time: ts, Value: float64(s), Seq: uint64(n*1000 + step*100 + s + 1)})
			}
		}
		n++
		start := time.Now()
		if _, err := f.svc.Ingest(ctx, edge, batch); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var busy time.Duration
	for range 30 {
		busy += send()
	}
	interval := 2 * busy / 30
	lat := make([]time.Duration, 0, 1024)
	next := time.Now()
	for b.Loop() {
		next = next.Add(interval)
		lat = append(lat, send())
		time.Sleep(time.Until(next))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(benchSensors*benchSteps)/interval.Seconds(), "paced_readings/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}
