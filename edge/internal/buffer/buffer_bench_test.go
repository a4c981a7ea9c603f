package buffer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// benchReading is about 200 bytes stored: a long sensor id and a model.
func benchReading(w, i int) wire.Reading {
	return wire.Reading{
		Sensor: fmt.Sprintf("plant-north/hall-03/line-%02d/press-%03d/%s", w%16, w, strings.Repeat("hydraulic_pressure_", 5)),
		Time:   time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).UnixNano() + int64(i),
		Value:  float64(i) * 0.5, Score: 0.12, Flags: wire.FlagAnomaly,
		Model: "isolation-forest-hydraulic-pressure@2026.11.3-build-7",
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// BenchmarkAppendGroupCommit: many concurrent writers, each Write returns
// after fsync. One op is one reading. Reports readings/s, readings per
// commit, and the p50/p99 of commit and Write latency.
func BenchmarkAppendGroupCommit(b *testing.B) {
	linger := Default().CommitInterval
	if v := os.Getenv("SM_BENCH_COMMIT_INTERVAL"); v != "" {
		linger, _ = time.ParseDuration(v)
	}
	for _, tc := range []struct{ writers, perWrite int }{{64, 1}, {1024, 1}, {64, 10}, {256, 10}, {64, 100}} {
		b.Run(fmt.Sprintf("writers=%d/per_write=%d", tc.writers, tc.perWrite), func(b *testing.B) {
			cfg := Default()
			cfg.Check = CheckQuick
			cfg.CommitInterval = linger
			q, err := Open(b.Context(), filepath.Join(b.TempDir(), FileName), cfg, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			var cmu sync.Mutex
			var commits []time.Duration
			q.onCommit = func(d time.Duration, _ int) {
				cmu.Lock()
				commits = append(commits, d)
				cmu.Unlock()
			}
			batches := make([][]wire.Reading, tc.writers)
			for w := range batches {
				for i := range tc.perWrite {
					batches[w] = append(batches[w], benchReading(w, i))
				}
			}
			size := len(appendReading(nil, &batches[0][0])) + 8
			var next atomic.Int64
			lat := make([][]time.Duration, tc.writers)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range tc.writers {
				wg.Go(func() {
					rs := batches[w]
					for next.Add(int64(len(rs))) <= int64(b.N)+int64(len(rs))-1 {
						t0 := time.Now()
						if err := q.Write(b.Context(), rs); err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
						rs[0].Time += int64(tc.perWrite)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			s := q.Stats()
			b.ReportMetric(float64(s.Appends)/elapsed.Seconds(), "readings/s")
			b.ReportMetric(float64(s.Appends)/float64(max(s.Commits, 1)), "readings/commit")
			b.ReportMetric(float64(size), "bytes/reading")
			b.ReportMetric(float64(percentile(commits, 0.5).Microseconds())/1000, "commit_p50_ms")
			b.ReportMetric(float64(percentile(commits, 0.99).Microseconds())/1000, "commit_p99_ms")
			b.ReportMetric(float64(percentile(all, 0.5).Microseconds())/1000, "write_p50_ms")
			b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "write_p99_ms")
		})
	}
}

// BenchmarkDrain: Peek + Ack of 5,000-record batches from a filled queue,
// the forwarder's side without the network. One op is one reading.
func BenchmarkDrain(b *testing.B) {
	cfg := Default()
	cfg.Check = CheckQuick
	q, err := Open(b.Context(), filepath.Join(b.TempDir(), FileName), cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	chunk := make([]wire.Reading, 5000)
	for i := range chunk {
		chunk[i] = benchReading(i%64, i)
	}
	for n := 0; n < b.N; n += len(chunk) {
		if err := q.Write(b.Context(), chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	got := 0
	for got < b.N {
		batch, err := q.Peek(b.Context(), 5000)
		if err != nil || batch == nil {
			b.Fatalf("peek: %v (after %d)", err, got)
		}
		if err := q.Ack(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
		got += batch.Len()
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "readings/s")
}

// BenchmarkBboltCommitBaseline is the disk's floor for comparison: one
// bbolt transaction with one record and fsync per op, no queue code.
func BenchmarkBboltCommitBaseline(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "base.db"), 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	v := appendReading(nil, new(benchReading(1, 1)))
	b.ReportAllocs()
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		if err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return bk.Put(seqKey(uint64(i)), v)
		}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "commit_p50_ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "commit_p99_ms")
}

// BenchmarkCommitAfterBigDrain: one-reading commits into a queue whose file
// grew to ~100 MiB during an outage and was then drained, so the file is
// mostly free pages. bbolt writes its whole freelist with every commit
// if the freelist is synced; this build does not sync it (FORMAT.md), and
// this benchmark shows why.
func BenchmarkCommitAfterBigDrain(b *testing.B) {
	cfg := Default()
	cfg.Check = CheckQuick
	q, err := Open(b.Context(), filepath.Join(b.TempDir(), FileName), cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	chunk := make([]wire.Reading, 10000)
	for i := range chunk {
		chunk[i] = benchReading(i%64, i)
	}
	for range 45 { // ~100 MiB
		if err := q.Write(b.Context(), chunk); err != nil {
			b.Fatal(err)
		}
	}
	for {
		batch, err := q.Peek(b.Context(), 20000)
		if err != nil {
			b.Fatal(err)
		}
		if batch == nil {
			break
		}
		if err := q.Ack(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	fileMiB := float64(q.Stats().FileBytes >> 20)
	one := chunk[:1]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := q.Write(b.Context(), one); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(fileMiB, "file_MiB")
}
