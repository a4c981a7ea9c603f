//go:build bench

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// latency returns p50 and p99 of publish → row written (the reading's
// timestamp, set by the publisher, to bench_written_at) for the sensors
// whose id starts with prefix and readings timed in [from, to), and the
// number of rows.
func latency(t *testing.T, dbURL, prefix string, from, to time.Time) (p50, p99 time.Duration, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var a, b float64
	err = conn.QueryRow(ctx, `SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY d), 0),
			coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY d), 0), count(*)
		FROM (SELECT extract(epoch FROM r.bench_written_at - r.time)::float8 AS d
			FROM readings r JOIN sensors s ON s.num = r.sensor_id
			WHERE s.id LIKE $1 AND r.time >= $2 AND r.time < $3) x`, prefix+"%", from, to).Scan(&a, &b, &n)
	if err != nil {
		t.Fatalf("latency query: %v", err)
	}
	return time.Duration(a * float64(time.Second)), time.Duration(b * float64(time.Second)), n
}

// edgeEndToEnd: sm-edge forwarding into a running sm-collector. Sustained
// rate: the load generator publishes one-reading messages as fast as the
// broker acknowledges them while the edge forwards, all on the same cores;
// the rate is readings stored (accepted by the collector) from the first
// publish to the last stored. Latency: the publisher paced at half that
// rate for a fixed time, publish → row written per reading.
func edgeEndToEnd(t *testing.T, bins binaries, v volumes, rep *report) {
	// 100 sensors: few sensor rows per collector batch; 20,000: the plant
	// of the issue, every batch touching thousands of sensors.
	for _, sensors := range []int{100, 20_000} {
		endToEnd(t, bins, v, rep, sensors)
	}
}

func endToEnd(t *testing.T, bins binaries, v volumes, rep *report, sensors int) {
	broker, coll, e := startStack(t, bins)
	defer func() {
		e.p.Stop()
		coll.p.Stop()
	}()
	t0 := time.Now()
	var pubDone atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		singleLoad("s", v.e2eMsgs, sensors).publish(t.Context(), t, broker.URL)
		pubDone.Store(time.Now().UnixNano())
	})
	wait := wg.Wait
	testenv.WaitFor(t, 10*time.Minute, "the readings to be stored", func() bool { return e.forwarded() >= float64(v.e2eMsgs) })
	took := time.Since(t0)
	rate := float64(v.e2eMsgs) / took.Seconds()
	wait()
	t.Logf("%d sensors, sustained: published and stored %d in %s (publisher finished after %s)", sensors, v.e2eMsgs, took, time.Duration(pubDone.Load()-t0.UnixNano()))
	rep.add(row{stage: "edge end to end", what: fmt.Sprintf("%d sensors, sustained: %d one-reading messages published as fast as acknowledged → edge → collector → PostgreSQL", sensors, v.e2eMsgs),
		figure: perSec(rate) + " readings"})

	half := rate / 2
	l := singleLoad("h", int(half*v.e2eLatencyFor.Seconds()), sensors)
	l.ratePerSec = half
	base := e.forwarded()
	from := time.Now()
	stopTrace := trace(t, e, coll, l)
	l.publish(t.Context(), t, broker.URL)
	to := time.Now()
	stopTrace()
	testenv.WaitFor(t, 2*time.Minute, "the paced readings to be stored", func() bool { return e.forwarded() >= base+float64(l.msgs) })
	p50, p99, n := latency(t, coll.dbURL, "h/", from.Add(-time.Second), to.Add(time.Second))
	achieved := float64(l.msgs) / to.Sub(from).Seconds()
	rep.add(row{stage: "edge end to end", what: fmt.Sprintf("%d sensors, publish → stored at 50 %% load (%s offered, %s achieved, %d readings)", sensors, perSec(half), perSec(achieved), n),
		figure: fmt.Sprintf("p50 %s, p99 %s", ms(p50), ms(p99)), goal: "p99 ≤ 250 ms"})
}

// trace logs, every second, what was published, committed to the edge's
// queue, forwarded and left in the queue, so a lagging stage shows.
func trace(t *testing.T, e *edge, c *collector, l *load) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				t.Logf("published %d, committed %.0f, forwarded %.0f, queue %.0f; edge forward latency %.3f s over %.0f requests; collector: batch %.3f s, db write %.3f s over %.0f, %.0f COPY fallbacks",
					l.publishedAt.Load(), e.committed(), e.forwarded(), e.queueRecords(),
					e.metric("smartmaint_edge_forward_latency_seconds_sum", ""), e.metric("smartmaint_edge_forward_latency_seconds_count", ""),
					metric(c.metrics, "smartmaint_collector_ingest_batch_seconds_sum", ""), metric(c.metrics, "smartmaint_collector_db_write_seconds_sum", ""),
					metric(c.metrics, "smartmaint_collector_db_write_seconds_count", ""), metric(c.metrics, "smartmaint_collector_ingest_copy_fallbacks_total", ""))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// collectorBatches builds n encoded 1,000-reading batches (100 sensors ×
// 10 instants) for edgeID starting at start, 1 ms apart per instant.
func collectorBatches(t *testing.T, edgeID string, start time.Time, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	var b wire.Batch
	seq := uint64(1)
	for i := range n {
		b.Reset()
		b.EdgeID, b.BatchID, b.FirstSeq = edgeID, fmt.Sprintf("%s-%d-%d", edgeID, start.UnixNano(), i), seq
		for k := range 1000 {
			ts := start.Add(time.Duration(i*10+k/100) * time.Millisecond)
			b.Readings = append(b.Readings, wire.Reading{Sensor: fmt.Sprintf("%s/l/a/s%02d", edgeID, k%100),
				Time: ts.UnixNano(), Value: 12 + float64(k%7)/10, Seq: seq})
			seq++
		}
		b.LastSeq = seq - 1
		body, err := wire.EncodeBatch(nil, &b)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = body
	}
	return out
}

// post sends one batch, retrying on 503/429 (the collector's overload
// answer); it returns the number of such retries.
func post(t *testing.T, client *http.Client, base, token string, body []byte) int {
	retries := 0
	for {
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/ingest", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", wire.ContentType)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("POST ingest: %v", err)
			return retries
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return retries
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			retries++
			time.Sleep(20 * time.Millisecond)
		default:
			t.Errorf("POST ingest: %d %.200s", resp.StatusCode, b)
			return retries
		}
	}
}

// collectorIngest: sm-collector's HTTP ingest (auth, decode, validate,
// dedup, transaction) against raw pgx COPY of the same shape of rows into
// the same table, both with 1 client and with 50 registered edges posting
// concurrently (COPY: 50 connections).
func collectorIngest(t *testing.T, bins binaries, v volumes, rep *report) {
	dir := t.TempDir()
	coll := startCollector(t, dir, bins.collector)
	const edges = 50
	ids := make([]string, edges)
	tokens := make([]string, edges)
	for i := range edges {
		ids[i] = fmt.Sprintf("be%02d", i)
		tokens[i] = coll.register(t, ids[i])
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: edges * 2}}
	httpStart := time.Now().UTC().Add(-50 * time.Minute).Truncate(time.Second)
	// Warm-up: one batch per edge registers its sensors.
	for i := range edges {
		post(t, client, coll.base, tokens[i], collectorBatches(t, ids[i], httpStart.Add(-5*time.Minute), 1)[0])
	}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, coll.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	edgeNum := map[string]int32{}
	sensorNum := map[string]int32{}
	rows, err := conn.Query(ctx, `SELECT id, num FROM edges`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int32
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		edgeNum[id] = n
	}
	rows, err = conn.Query(ctx, `SELECT id, num FROM sensors`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int32
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		sensorNum[id] = n
	}

	// rawCopy writes n 1,000-row transactions for edge id with COPY, the
	// times offset by 500 µs from the HTTP rows so they never collide.
	rawCopy := func(c *pgx.Conn, id string, n int, httpStart time.Time) {
		cols := []string{"sensor_id", "time", "value", "quality", "flags", "score", "model", "edge_num", "seq"}
		rs := make([][]any, 1000)
		for i := range n {
			for k := range 1000 {
				ts := httpStart.Add(time.Duration(i*10+k/100)*time.Millisecond + 500*time.Microsecond)
				rs[k] = []any{sensorNum[fmt.Sprintf("%s/l/a/s%02d", id, k%100)], ts, 12 + float64(k%7)/10, int16(0), int32(0), float32(0), nil,
					edgeNum[id], int64(1_000_000_000 + i*1000 + k)}
			}
			err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				_, err := tx.CopyFrom(ctx, pgx.Identifier{"readings"}, cols, pgx.CopyFromRows(rs))
				return err
			})
			if err != nil {
				t.Errorf("COPY: %v", err)
				return
			}
		}
	}
	run := func(clients, perClient int, httpStart time.Time) {
		bodies := make([][][]byte, clients)
		for i := range clients {
			bodies[i] = collectorBatches(t, ids[i], httpStart, perClient)
		}
		var retries atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for i := range clients {
			wg.Go(func() {
				for _, b := range bodies[i] {
					retries.Add(int64(post(t, client, coll.base, tokens[i], b)))
				}
			})
		}
		wg.Wait()
		httpRate := float64(clients*perClient*1000) / time.Since(t0).Seconds()
		conns := make([]*pgx.Conn, clients)
		for i := range conns {
			if conns[i], err = pgx.Connect(ctx, coll.dbURL); err != nil {
				t.Fatal(err)
			}
			defer conns[i].Close(ctx)
		}
		t1 := time.Now()
		for i := range clients {
			wg.Go(func() { rawCopy(conns[i], ids[i], perClient, httpStart) })
		}
		wg.Wait()
		copyRate := float64(clients*perClient*1000) / time.Since(t1).Seconds()
		what := fmt.Sprintf("HTTP ingest with dedup, 1 client, %d × 1,000-reading batches", perClient)
		if clients > 1 {
			what = fmt.Sprintf("HTTP ingest with dedup, %d edges concurrently, %d × 1,000 readings each (%d retries after 503/429)", clients, perClient, retries.Load())
		}
		rep.add(row{stage: "collector ingest", what: what, figure: perSec(httpRate) + " readings",
			baseline: fmt.Sprintf("%s (raw COPY, %d conn)", perSec(copyRate), clients), ratio: ratio(httpRate, copyRate), goal: "≥ 0.6 × COPY"})
	}
	run(1, v.collBatches1, httpStart)
	run(edges, v.collBatches50, httpStart.Add(20*time.Minute))
	rep.add(row{stage: "footprint", what: "sm-collector memory after the 50-edge ingest", figure: memoryOf(coll.p).String()})
}

// queueRecords is the number of records in the edge's queue (the
// smartmaint_edge_buffer_records gauge), or -1. Not from /status: with
// 20,000 sensors that document lists every sensor (~6 MB of JSON, most of
// a second of the edge's CPU), and polling it would load the edge more
// than the traffic being measured.
func (e *edge) queueRecords() float64 {
	return e.metric("smartmaint_edge_buffer_records", "")
}

// backlogDrain: the collector is down while N readings (batched messages)
// pile up in the edge's durable queue; then it comes back while live
// one-reading traffic flows at a fixed rate. Drain rate: N / time from
// the collector's readiness until the queue holds no more than a second
// of live traffic. Live latency: publish → stored of the live readings
// published during the drain.
func backlogDrain(t *testing.T, bins binaries, v volumes, rep *report) {
	broker, coll, e := startStack(t, bins)
	coll.p.Stop()
	const perMsg = 100
	l := batchLoad("d", v.drainN/perMsg, perMsg, 20)
	n := float64(l.msgs * perMsg)
	l.publish(t.Context(), t, broker.URL)
	testenv.WaitFor(t, 10*time.Minute, "the backlog in the edge's queue", func() bool { return e.committed() >= n })
	backlog := e.queueRecords()

	ctx, cancel := context.WithCancel(t.Context())
	live := singleLoad("live", int(v.liveRate*3600), 500)
	live.ratePerSec = v.liveRate
	wait := live.publishAsync(ctx, t, broker.URL)
	from := time.Now()
	coll.start(t)
	t0 := time.Now()
	if !testenv.Poll(30*time.Minute, 100*time.Millisecond, func() bool {
		r := e.queueRecords()
		return r >= 0 && r <= v.liveRate
	}) {
		t.Fatalf("drain did not finish in 30 minutes (queue %v records)", e.queueRecords())
	}
	drainDur := time.Since(t0)
	to := time.Now()
	cancel()
	wait()
	testenv.WaitFor(t, 2*time.Minute, "the live readings to be stored", func() bool { return e.queueRecords() == 0 })
	p50, p99, got := latency(t, coll.dbURL, "live/", from, to)
	drainRate := backlog / drainDur.Seconds()
	rep.add(row{stage: "backlog drain", what: fmt.Sprintf("%.0f queued records (readings and a few events) drained while %s live readings flow (issue figure: 5 M; set BENCH_DRAIN_N)", backlog, perSec(v.liveRate)),
		figure: perSec(drainRate) + " readings", baseline: perSec(v.liveRate) + " (live rate)", ratio: ratio(drainRate, v.liveRate), goal: "≥ 5 × live"})
	rep.add(row{stage: "backlog drain", what: fmt.Sprintf("live publish → stored during the drain (%d readings)", got),
		figure: fmt.Sprintf("p50 %s, p99 %s", ms(p50), ms(p99)), goal: "p99 ≤ 1 s"})
}

// microPackages are the packages whose micro benchmarks run in make bench.
var microPackages = []string{
	"./shared/wire", "./edge/internal/mapping", "./edge/internal/buffer", "./edge/internal/detect",
	"./edge/internal/forward", "./models", "./collector/internal/ingest", "./collector/internal/server",
}

// micro runs the package micro benchmarks (one package at a time) and
// adds one row per benchmark with its ns/op, allocations and custom
// metrics.
func micro(t *testing.T, root string, v volumes, rep *report) {
	benchLine := regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)
	args := append([]string{"test", "-p", "1", "-count=1", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", v.microTime, "-timeout", "20m"}, microPackages...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	pkg := ""
	for line := range strings.SplitSeq(out.String(), "\n") {
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/smartmaint/smartmaint/")
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fields := strings.Split(m[4], "\t")
		kept := fields[:0]
		for _, f := range fields {
			// Bytes per op are in the package output; the table keeps
			// time, allocations and the benchmark's own metrics.
			if f = strings.TrimSpace(f); f != "" && !strings.HasSuffix(f, " B/op") {
				kept = append(kept, f)
			}
		}
		fields = kept
		rep.add(row{stage: "micro", what: fmt.Sprintf("`%s` %s", pkg, strings.TrimPrefix(m[1], "Benchmark")), figure: strings.Join(fields, ", ")})
	}
	if err != nil {
		t.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}
