package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Shape of the 20,000-sensor plant of BENCHMARKS.md: one edge at 1 Hz
// forwards batches of 5,000 readings, several in flight at once.
const (
	manySensors     = 20_000
	manyBatchSize   = 5_000
	manyConcurrency = 4
)

// BenchmarkWriteBatchManySensors measures WriteBatch (default write
// method) with batches of 5,000 readings over 20,000 registered sensors,
// written by 4 concurrent writers into PostgreSQL. One op is one batch.
// "rotating" gives each batch 5,000 distinct sensors in turn (a plant at
// 1 Hz, so concurrent batches hold different sensors); "scattered" draws
// each reading's sensor pseudo-randomly, so concurrent batches share
// sensors. It reports readings/s and ms per batch.
func BenchmarkWriteBatchManySensors(b *testing.B) {
	for _, bc := range []struct {
		name   string
		sensor func(k int) int
	}{
		{"rotating", func(k int) int { return k % manySensors }},
		{"scattered", func(k int) int { return int(uint32(k)*2654435761) % manySensors }},
	} {
		b.Run(bc.name, func(b *testing.B) { benchManySensors(b, bc.sensor) })
	}
}

// manySensorsDB is a fresh database with 20,000 sensors of one edge; batch
// builds the i-th batch of 5,000 readings of the run.
type manySensorsDB struct {
	db    *DB
	batch func(i int) *BatchWrite
}

func newManySensorsDB(b *testing.B, sensorOf func(k int) int) manySensorsDB {
	b.Helper()
	ctx := context.Background()
	db := openTestDB(b, Options{Timescale: TimescaleOff, MaxConns: manyConcurrency + 2})
	edge, _, err := db.RegisterEdge(ctx, "edge-many")
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, manySensors)
	for i := range ids {
		ids[i] = fmt.Sprintf("site1/line%d/asset%03d/s%05d", i%4, i%500, i)
	}
	nums := make([]int32, manySensors)
	for start := 0; start < len(ids); start += 5000 {
		metas, err := db.RegisterSensors(ctx, edge.ID, ids[start:start+5000])
		if err != nil {
			b.Fatal(err)
		}
		for i := start; i < start+5000; i++ {
			nums[i] = metas[ids[i]].Num
		}
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	// Reading k of the run is sensor sensorOf(k) at base + k µs: every
	// (sensor, time) is new, and each sensor's times increase.
	batch := func(i int) *BatchWrite {
		w := &BatchWrite{EdgeID: edge.ID, BatchID: fmt.Sprintf("b%d", i),
			FirstSeq: uint64(i*manyBatchSize + 1), LastSeq: uint64((i + 1) * manyBatchSize),
			Readings: make([]wire.Reading, manyBatchSize), Nums: make([]int32, manyBatchSize)}
		for j := range manyBatchSize {
			k := i*manyBatchSize + j
			s := sensorOf(k)
			w.Readings[j] = wire.Reading{Sensor: ids[s], Time: base.Add(time.Duration(k) * time.Microsecond).UnixNano(),
				Value: float64(k), Quality: wire.QualityGood, Seq: uint64(k + 1), Score: 0.1}
			w.Nums[j] = nums[s]
		}
		return w
	}
	return manySensorsDB{db: db, batch: batch}
}

func benchManySensors(b *testing.B, sensorOf func(k int) int) {
	ctx := context.Background()
	m := newManySensorsDB(b, sensorOf)
	db, batch := m.db, m.batch
	// Warm up: every sensor has a stored reading before timing starts.
	next := 0
	for ; next < manySensors/manyBatchSize; next++ {
		if _, err := db.WriteBatch(ctx, batch(next)); err != nil {
			b.Fatal(err)
		}
	}
	var counter atomic.Int64
	counter.Store(int64(next))
	last := int64(next + b.N)
	var wg sync.WaitGroup
	errs := make(chan error, manyConcurrency)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range manyConcurrency {
		wg.Go(func() {
			for {
				i := counter.Add(1) - 1
				if i >= last {
					return
				}
				w := batch(int(i))
				if _, err := db.WriteBatch(ctx, w); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*manyBatchSize)/elapsed.Seconds(), "readings/s")
	b.ReportMetric(float64(elapsed.Milliseconds())/float64(b.N)*manyConcurrency, "ms/batch")
}

// BenchmarkListSensorsManySensors measures one full page (1,000 sensors)
// of ListSensors, with last values, over 20,000 sensors holding 5
// readings each. One op is one page.
func BenchmarkListSensorsManySensors(b *testing.B) {
	ctx := context.Background()
	m := newManySensorsDB(b, func(k int) int { return k % manySensors })
	for i := range 5 * manySensors / manyBatchSize {
		if _, err := m.db.WriteBatch(ctx, m.batch(i)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := m.db.pool.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cursor := ""
	for b.Loop() {
		page, next, err := m.db.ListSensors(ctx, SensorFilter{}, Page{Cursor: cursor, Limit: MaxPageLimit})
		if err != nil || len(page) != MaxPageLimit || page[0].LastValue == nil {
			b.Fatalf("page of %d sensors, %v", len(page), err)
		}
		cursor = next
		if next == "" {
			cursor = ""
		}
	}
}

// BenchmarkLookupSensorsGrownRegistry measures LookupSensors of 400 ids
// (one forwarded batch's worth of cache misses) after the registry grew
// from empty to 20,000 auto-registered sensors in batches of 400, the way
// a new plant registers itself, on the same pooled connections. One op is
// one lookup.
func BenchmarkLookupSensorsGrownRegistry(b *testing.B) {
	ctx := context.Background()
	db := openTestDB(b, Options{Timescale: TimescaleOff, MaxConns: 2})
	if _, _, err := db.RegisterEdge(ctx, "edge-grow"); err != nil {
		b.Fatal(err)
	}
	const per = 400
	batch := func(i int) []string {
		ids := make([]string, per)
		for k := range ids {
			n := (i*per + k) % manySensors
			ids[k] = fmt.Sprintf("site1/line%d/asset%03d/s%05d", n/1000, (n/10)%100, n)
		}
		return ids
	}
	for i := range manySensors / per {
		if _, err := db.RegisterSensors(ctx, "edge-grow", batch(i)); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		m, err := db.LookupSensors(ctx, batch(i))
		if err != nil || len(m) != per {
			b.Fatalf("lookup: %d found, %v", len(m), err)
		}
		i++
	}
}

// BenchmarkRegisterSensorsNew measures RegisterSensors of 400 new ids (a
// forwarded batch of a plant coming online) into a registry that already
// holds 20,000 sensors. One op is one call.
func BenchmarkRegisterSensorsNew(b *testing.B) {
	ctx := context.Background()
	db := openTestDB(b, Options{Timescale: TimescaleOff, MaxConns: 2})
	if _, _, err := db.RegisterEdge(ctx, "edge-new"); err != nil {
		b.Fatal(err)
	}
	const per = 400
	batch := func(i int) []string {
		ids := make([]string, per)
		for k := range ids {
			n := i*per + k
			ids[k] = fmt.Sprintf("site1/line%d/asset%03d/s%07d", n/1000, (n/10)%100, n)
		}
		return ids
	}
	for i := range manySensors / per {
		if _, err := db.RegisterSensors(ctx, "edge-new", batch(i)); err != nil {
			b.Fatal(err)
		}
	}
	i := manySensors / per
	for b.Loop() {
		m, err := db.RegisterSensors(ctx, "edge-new", batch(i))
		if err != nil || len(m) != per {
			b.Fatalf("register: %d entries, %v", len(m), err)
		}
		i++
	}
}
