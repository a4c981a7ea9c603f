package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Benchmark shape: 1,000 readings per batch (100 sensors × 10 instants),
// sent by 4 concurrent clients, the edge's default forwarding shape.
const (
	benchSensors  = 100
	benchPerBatch = 1000
	benchClients  = 4
)

// benchBatches prepares n encoded batches of fresh (sensor, time) pairs
// for edge "edge", starting at start.
func benchBatches(b *testing.B, prefix string, start time.Time, n int) [][]byte {
	b.Helper()
	out := make([][]byte, n)
	var batch wire.Batch
	seq := uint64(1)
	for i := range n {
		batch.Reset()
		batch.EdgeID, batch.BatchID, batch.FirstSeq = "edge", fmt.Sprintf("%s-%d", prefix, i), seq
		for k := range benchPerBatch {
			ts := start.Add(time.Duration(i*benchPerBatch/benchSensors+k/benchSensors) * time.Millisecond)
			batch.Readings = append(batch.Readings, wire.Reading{Sensor: fmt.Sprintf("%s/l/a/s%d", prefix, k%benchSensors),
				Time: ts.UnixNano(), Value: float64(k), Seq: seq})
			seq++
		}
		batch.LastSeq = seq - 1
		body, err := wire.EncodeBatch(nil, &batch)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = body
	}
	return out
}

func benchEnv(b *testing.B) *env {
	return start(b, func(c *config.Config) {
		c.RateLimits.Edge.PerSecond = 0
		c.RateLimits.APIKey.PerSecond = 0
		c.Ingest.MaxInFlight = benchClients
		c.Log.Level = "error"
	})
}

// postAll sends bodies with benchClients concurrent clients and returns
// each request's latency.
func postAll(b *testing.B, e *env, bodies [][]byte, pace time.Duration) []time.Duration {
	b.Helper()
	lat := make([]time.Duration, len(bodies))
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range benchClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				if pace > 0 {
					if d := time.Until(t0.Add(time.Duration(i) * pace)); d > 0 {
						time.Sleep(d)
					}
				}
				req, _ := http.NewRequest("POST", e.http.URL+"/api/v1/ingest", bytes.NewReader(bodies[i]))
				req.Header.Set("Authorization", "Bearer "+e.sec["edge"])
				req.Header.Set("Content-Type", wire.ContentType)
				st := time.Now()
				resp, err := e.http.Client().Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(st)
				if resp.StatusCode != 200 {
					b.Errorf("batch %d: %d", i, resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	return lat
}

// rawCopy writes the same shape of data straight into readings with pgx
// COPY, one transaction per 1,000 rows, benchClients at a time: the
// ceiling the HTTP path is measured against.
func rawCopy(b *testing.B, e *env, nums []int32, start time.Time, lo, hi int) {
	b.Helper()
	ctx := context.Background()
	pool := e.srv.DB().Pool()
	var next atomic.Int64
	next.Store(int64(lo))
	var wg sync.WaitGroup
	cols := []string{"sensor_id", "time", "value", "quality", "flags", "score", "model", "edge_num", "seq"}
	for range benchClients {
		wg.Go(func() {
			rows := make([][]any, benchPerBatch)
			for {
				i := int(next.Add(1) - 1)
				if i >= hi {
					return
				}
				for k := range benchPerBatch {
					ts := start.Add(time.Duration(i*benchPerBatch/benchSensors+k/benchSensors) * time.Millisecond)
					rows[k] = []any{nums[k%benchSensors], ts, float64(k), int16(0), int32(0), float32(0), nil, int32(1), int64(i*benchPerBatch + k)}
				}
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					_, err := tx.CopyFrom(ctx, pgx.Identifier{"readings"}, cols, pgx.CopyFromRows(rows))
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkIngestHTTPvsRawCopy measures sustained readings/s through the
// HTTP API (auth, decode, validation, dedup, transaction) into PostgreSQL,
// and raw pgx COPY of the same rows into the same table in the same run.
// b.N is the number of 1,000-reading batches for each; allocations are
// those of the HTTP path (client and server, both in this process).
func BenchmarkIngestHTTPvsRawCopy(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	start := time.Now().UTC().Add(-time.Hour)
	httpBodies := benchBatches(b, "h", start, b.N)
	// Warm up: registers the HTTP sensors and the connection pool.
	warm := benchBatches(b, "h", start.Add(-30*time.Minute), 1)
	postAll(b, e, warm, 0)
	ids := make([]string, benchSensors)
	for i := range ids {
		ids[i] = fmt.Sprintf("c/l/a/s%d", i)
	}
	meta, err := e.srv.DB().RegisterSensors(ctx, "edge", ids)
	if err != nil {
		b.Fatal(err)
	}
	nums := make([]int32, benchSensors)
	for i, id := range ids {
		nums[i] = meta[id].Num
	}
	// Alternate rounds of both, so a noisy neighbour slows both alike.
	const round = 20
	var httpDur, copyDur time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for lo := 0; lo < b.N; lo += round {
		hi := min(lo+round, b.N)
		t0 := time.Now()
		postAll(b, e, httpBodies[lo:hi], 0)
		httpDur += time.Since(t0)
		b.StopTimer()
		t1 := time.Now()
		rawCopy(b, e, nums, start, lo, hi)
		copyDur += time.Since(t1)
		b.StartTimer()
	}
	b.StopTimer()
	total := float64(b.N * benchPerBatch)
	httpRate, copyRate := total/httpDur.Seconds(), total/copyDur.Seconds()
	b.ReportMetric(httpRate, "http-readings/s")
	b.ReportMetric(copyRate, "copy-readings/s")
	b.ReportMetric(httpRate/copyRate, "ratio")
}

// BenchmarkIngestHTTPLatencyHalfLoad first measures the sustained HTTP
// rate, then sends b.N 1,000-reading batches paced at half of it and
// reports the p50 and p99 request latency.
func BenchmarkIngestHTTPLatencyHalfLoad(b *testing.B) {
	e := benchEnv(b)
	start := time.Now().UTC().Add(-time.Hour)
	const probe = 100
	t0 := time.Now()
	postAll(b, e, benchBatches(b, "p", start, probe), 0)
	perBatch := time.Since(t0) / probe
	bodies := benchBatches(b, "q", start, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	lat := postAll(b, e, bodies, 2*perBatch)
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(time.Second)/float64(2*perBatch)*benchPerBatch, "offered-readings/s")
}
