package ingest

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type fixture struct {
	db  *store.DB
	svc *Service
	reg *prometheus.Registry
	dsn string
	now time.Time
}

func newFixture(t testing.TB, opts store.Options, cfg Config) *fixture {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	opts.Logger = testLogger(t)
	if opts.Timescale == "" {
		opts.Timescale = store.TimescaleOff
	}
	db, err := store.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return now }
	}
	reg := prometheus.NewRegistry()
	return &fixture{db: db, svc: New(db, cfg, testLogger(t), reg), reg: reg, dsn: dsn, now: now}
}

func (f *fixture) edge(t testing.TB, name string) string {
	t.Helper()
	e, _, err := f.db.RegisterEdge(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return e.ID
}

func (f *fixture) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func ptr(v float64) *float64 { return &v }

// mixedBatch is a batch with one item of every kind of problem. See
// TestIngestMixedBatch for the expected outcome of each item.
func mixedBatch(now time.Time) (*wire.Batch, time.Time) {
	t := now.Add(-time.Hour)
	r := func(sensor string, at time.Time, v float64) wire.Reading {
		return wire.Reading{Sensor: sensor, Time: at.UnixNano(), Value: v, Seq: uint64(at.UnixNano() / 1000)}
	}
	rs := []wire.Reading{
		0:  r("p/l/a/t1", t, 1),                  // duplicate of the stored reading
		1:  r("p/l/a/t1", t.Add(time.Second), 2), // accepted
		2:  r("p/l/a/t1", t.Add(time.Second), 2), // duplicate within the batch
		3:  r("p/l/a/t1", t.Add(3*time.Second), math.NaN()),
		4:  r("p/l/a/t1", t.Add(4*time.Second), math.Inf(1)),
		5:  r("p/l/a/t1", now.Add(time.Hour), 5), // future
		6:  r("p/l/a/t1", now.Add(-40*24*time.Hour), 6),
		7:  r("p/l/a/t1", t.Add(7*time.Second), 7), // quality set below
		8:  r("p/l/a/new", t, 8),                   // auto-registered
		9:  r("p/l/b/own", t, 9),                   // another edge's sensor
		10: r("p/l/a/range", t, 150),               // outside range, policy reject
		11: r("p/l/a/flag", t, 150),                // outside range, policy flag
		12: r("bad//id", t, 12),
		13: r("p/l/a/t1", t.Add(13*time.Second), 13), // score set below
		14: r("p/l/a/t1", t.Add(14*time.Second), 14), // model set below
	}
	rs[7].Quality = 7
	rs[13].Score = 1.5
	rs[14].Model = "m\x00@1"
	b := &wire.Batch{
		EdgeID: "edge-a", BatchID: "b1", FirstSeq: 1, LastSeq: 99, Readings: rs,
		Events: []wire.Event{
			{Sensor: "p/l/a/t1", Asset: "a", Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityMajor, Rule: "H",
				Time: t.UnixNano(), WindowStart: t.Add(-time.Minute).UnixNano(), WindowEnd: t.UnixNano(), Value: 99, Score: 0.9, Threshold: 90, Seq: 100},
			{Sensor: "p/l/a/t1", Kind: wire.EventLimit, State: wire.EventRaised, Severity: 0, Time: t.UnixNano(), Seq: 101},
		},
		Gaps: []wire.Gap{
			{Sensor: "p/l/a/t1", From: t.Add(-time.Hour).UnixNano(), To: t.Add(-30 * time.Minute).UnixNano(), Count: 1800, Reason: wire.GapBudget, Seq: 200},
			{Sensor: "p/l/a/t1", From: t.UnixNano(), To: t.Add(-time.Second).UnixNano(), Count: 1, Reason: wire.GapBudget, Seq: 201},
		},
	}
	return b, t
}

var wantMixedRejections = []wire.Rejection{
	{Item: "reading", Index: 3, Sensor: "p/l/a/t1", Reason: ReasonNonFinite},
	{Item: "reading", Index: 4, Sensor: "p/l/a/t1", Reason: ReasonNonFinite},
	{Item: "reading", Index: 5, Sensor: "p/l/a/t1", Reason: ReasonFuture},
	{Item: "reading", Index: 6, Sensor: "p/l/a/t1", Reason: ReasonTooOld},
	{Item: "reading", Index: 7, Sensor: "p/l/a/t1", Reason: ReasonInvalidQuality},
	{Item: "reading", Index: 9, Sensor: "p/l/b/own", Reason: ReasonForeignSensor},
	{Item: "reading", Index: 10, Sensor: "p/l/a/range", Reason: ReasonOutOfRange},
	{Item: "reading", Index: 12, Sensor: "bad//id", Reason: ReasonInvalidSensor},
	{Item: "reading", Index: 13, Sensor: "p/l/a/t1", Reason: ReasonInvalidScore},
	{Item: "reading", Index: 14, Sensor: "p/l/a/t1", Reason: ReasonInvalidText},
	{Item: "event", Index: 1, Sensor: "p/l/a/t1", Reason: ReasonInvalidEvent},
	{Item: "gap", Index: 1, Sensor: "p/l/a/t1", Reason: ReasonInvalidGap},
}

func TestIngestMixedBatch(t *testing.T) {
	t.Parallel()
	for _, method := range []string{store.WriteCopy, store.WriteStaging, store.WriteUnnest} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, store.Options{WriteMethod: method}, Config{})
			edgeA, edgeB := f.edge(t, "edge-a"), f.edge(t, "edge-b")
			if _, err := f.db.RegisterSensors(ctx, edgeB, []string{"p/l/b/own"}); err != nil {
				t.Fatal(err)
			}
			for id, policy := range map[string]string{"p/l/a/range": store.RangeReject, "p/l/a/flag": store.RangeFlag} {
				if err := f.db.UpsertSensor(ctx, store.Sensor{ID: id, RangeMin: ptr(0), RangeMax: ptr(100), RangePolicy: policy, EdgeID: edgeA}); err != nil {
					t.Fatal(err)
				}
			}
			b, t0 := mixedBatch(f.now)
			first := &wire.Batch{EdgeID: edgeA, BatchID: "b0", Readings: []wire.Reading{b.Readings[0]}}
			if resp, err := f.svc.Ingest(ctx, edgeA, first); err != nil || resp.Accepted != 1 {
				t.Fatalf("seed batch: %+v, %v", resp, err)
			}

			resp, err := f.svc.Ingest(ctx, edgeA, b)
			if err != nil {
				t.Fatal(err)
			}
			want := &wire.IngestResponse{BatchID: "b1", Accepted: 5, Duplicate: 2, Rejected: 12, Rejections: wantMixedRejections, ServerTime: f.now}
			if diff := cmp.Diff(want, resp); diff != "" {
				t.Fatalf("response (-want +got):\n%s", diff)
			}

			// What is stored.
			if n := f.count(t, `SELECT count(*) FROM readings r JOIN sensors s ON s.num = r.sensor_id WHERE s.id = 'p/l/a/t1'`); n != 2 {
				t.Errorf("p/l/a/t1 has %d readings, want 2", n)
			}
			if n := f.count(t, `SELECT count(*) FROM readings`); n != 4 {
				t.Errorf("readings has %d rows, want 4", n)
			}
			if n := f.count(t, `SELECT count(*) FROM readings r JOIN sensors s ON s.num = r.sensor_id WHERE s.id = 'p/l/a/flag' AND r.flags & $1 <> 0`, int32(store.FlagOutOfRange)); n != 1 {
				t.Errorf("flagged out-of-range readings: %d, want 1", n)
			}
			s, err := f.db.GetSensor(ctx, "p/l/a/new")
			if err != nil || !s.AutoRegistered || s.EdgeID != edgeA || s.Asset != "a" {
				t.Errorf("auto-registered sensor: %+v, %v", s, err)
			}
			s, _ = f.db.GetSensor(ctx, "p/l/a/t1")
			if s.LastValue == nil || *s.LastValue != 2 || !s.LastTime.Equal(t0.Add(time.Second)) {
				t.Errorf("last value of p/l/a/t1: %v at %s", s.LastValue, s.LastTime)
			}
			if n := f.count(t, `SELECT count(*) FROM events WHERE edge_id = $1 AND seq = 100`, edgeA); n != 1 {
				t.Errorf("events stored: %d, want 1", n)
			}

			// Dead letters: one row per rejection, with reason and raw values.
			items, next, err := f.db.ListRejected(ctx, store.RejectedFilter{BatchID: "b1"}, store.Page{})
			if err != nil || next != "" {
				t.Fatal(err, next)
			}
			if len(items) != 12 {
				t.Fatalf("dead letters: %d, want 12", len(items))
			}
			byIndex := map[string]store.RejectedItem{}
			for _, it := range items {
				byIndex[it.Item+string(rune('0'+it.Index))] = it
			}
			if nan := byIndex["reading3"]; nan.Reason != ReasonNonFinite || !strings.Contains(string(nan.Raw), `"value": "NaN"`) {
				t.Errorf("NaN dead letter: %s %s", nan.Reason, nan.Raw)
			}
			if fut := byIndex["reading5"]; fut.Reason != ReasonFuture || !strings.Contains(string(fut.Raw), `"time_ns"`) || fut.EdgeID != edgeA {
				t.Errorf("future dead letter: %+v", fut)
			}
			nanOnly, _, err := f.db.ListRejected(ctx, store.RejectedFilter{Reason: ReasonNonFinite}, store.Page{Limit: 1})
			if err != nil || len(nanOnly) != 1 {
				t.Fatalf("filtered dead letters: %d, %v", len(nanOnly), err)
			}
			gaps, _, err := f.db.ListGaps(ctx, store.GapFilter{EdgeID: edgeA}, store.Page{})
			if err != nil || len(gaps) != 1 || gaps[0].Count != 1800 || gaps[0].Reason != wire.GapBudget {
				t.Fatalf("gaps: %+v, %v", gaps, err)
			}

			// The same batch again (the edge did not get the answer): same
			// answer, nothing stored twice.
			b2, _ := mixedBatch(f.now)
			resp2, err := f.svc.Ingest(ctx, edgeA, b2)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, resp2); diff != "" {
				t.Fatalf("retried batch response (-want +got):\n%s", diff)
			}
			for table, n := range map[string]int{"readings": 4, "rejected_readings": 12, "gaps": 1, "events": 1, "edge_batches": 2} {
				if got := f.count(t, `SELECT count(*) FROM `+table); got != n {
					t.Errorf("after retry %s has %d rows, want %d", table, got, n)
				}
			}

			// The same items under a new batch id: readings, events and
			// gaps are recognised as duplicates; invalid ones are rejected
			// (and dead-lettered) again.
			b3, _ := mixedBatch(f.now)
			b3.BatchID = "b1-resent"
			resp3, err := f.svc.Ingest(ctx, edgeA, b3)
			if err != nil {
				t.Fatal(err)
			}
			if resp3.Accepted != 0 || resp3.Duplicate != 7 || resp3.Rejected != 12 {
				t.Fatalf("re-sent items: accepted %d duplicate %d rejected %d, want 0/7/12", resp3.Accepted, resp3.Duplicate, resp3.Rejected)
			}

			if got := testutil.ToFloat64(f.svc.m.readings.WithLabelValues("accepted")); got != 4 {
				t.Errorf("accepted readings metric %v, want 4", got)
			}
			if got := testutil.ToFloat64(f.svc.m.batches.WithLabelValues("replayed")); got != 1 {
				t.Errorf("replayed batches metric %v, want 1", got)
			}
		})
	}
}

func TestIngestAutoRegisterOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, store.Options{}, Config{AutoRegister: AutoRegisterOff})
	edge := f.edge(t, "edge-a")
	if _, err := f.db.RegisterSensors(ctx, edge, []string{"p/l/a/known"}); err != nil {
		t.Fatal(err)
	}
	at := f.now.Add(-time.Minute).UnixNano()
	resp, err := f.svc.Ingest(ctx, edge, &wire.Batch{BatchID: "x", Readings: []wire.Reading{
		{Sensor: "p/l/a/known", Time: at, Value: 1},
		{Sensor: "p/l/a/unknown", Time: at, Value: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.Rejection{{Item: "reading", Index: 1, Sensor: "p/l/a/unknown", Reason: ReasonUnknownSensor}}
	if resp.Accepted != 1 || resp.Rejected != 1 || !cmp.Equal(want, resp.Rejections) {
		t.Fatalf("response %+v", resp)
	}
	if _, err := f.db.GetSensor(ctx, "p/l/a/unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown sensor was registered: %v", err)
	}
}

func TestIngestRejectsForeignBatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t, store.Options{}, Config{})
	edge := f.edge(t, "edge-a")
	for name, b := range map[string]*wire.Batch{
		"other edge":  {EdgeID: "edge-b", BatchID: "x"},
		"no batch id": {EdgeID: edge},
	} {
		if _, err := f.svc.Ingest(context.Background(), edge, b); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: %v, want ErrInvalidBatch", name, err)
		}
	}
}

// TestIngestPoisonBatch: a batch the database refuses for good (here a
// constraint the validator does not know) is dead-lettered as a whole and
// answered, so the edge's queue moves on; the next batch is stored.
func TestIngestPoisonBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, store.Options{}, Config{})
	edge := f.edge(t, "edge-a")
	if _, err := f.db.Pool().Exec(ctx, `ALTER TABLE readings ADD CONSTRAINT value_small CHECK (value < 1e6)`); err != nil {
		t.Fatal(err)
	}
	at := f.now.Add(-time.Minute).UnixNano()
	poison := &wire.Batch{BatchID: "poison", Readings: []wire.Reading{
		{Sensor: "p/l/a/x", Time: at, Value: 1},
		{Sensor: "p/l/a/x", Time: at + 1000, Value: 2e6},
	}, Gaps: []wire.Gap{{From: at, To: at, Reason: wire.GapCorrupt, Seq: 5}}}
	resp, err := f.svc.Ingest(ctx, edge, poison)
	if err != nil {
		t.Fatalf("poison batch: %v", err)
	}
	if resp.Accepted != 0 || resp.Rejected != 3 || resp.Rejections[0].Reason != ReasonStorageError {
		t.Fatalf("poison response %+v", resp)
	}
	if n := f.count(t, `SELECT count(*) FROM rejected_readings WHERE reason = 'storage_error'`); n != 3 {
		t.Fatalf("dead letters %d, want 3", n)
	}
	again, err := f.svc.Ingest(ctx, edge, poison)
	if err != nil || again.Rejected != 3 {
		t.Fatalf("retried poison batch: %+v, %v", again, err)
	}
	good, err := f.svc.Ingest(ctx, edge, &wire.Batch{BatchID: "good", Readings: []wire.Reading{{Sensor: "p/l/a/x", Time: at, Value: 1}}})
	if err != nil || good.Accepted != 1 {
		t.Fatalf("batch after poison: %+v, %v", good, err)
	}
	// Each batch is counted once, under its own result.
	for result, want := range map[string]float64{"poisoned": 1, "replayed": 1, "stored": 1} {
		if got := testutil.ToFloat64(f.svc.m.batches.WithLabelValues(result)); got != want {
			t.Errorf("batches{result=%q} = %v, want %v", result, got, want)
		}
	}
}

// TestIngestOverload: with one write slot and no waiting room, a second
// batch is refused at once while the first is stuck in a slow database,
// and the stuck one gives up with ErrOverloaded at the write deadline.
// Once the database is fast again, the batch goes through.
func TestIngestOverload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, store.Options{}, Config{MaxInFlight: 1, MaxQueue: -1, WriteTimeout: 700 * time.Millisecond, RetryAfter: 3 * time.Second})
	edge := f.edge(t, "edge-a")
	at := f.now.Add(-time.Minute).UnixNano()
	batch := func(id string) *wire.Batch {
		return &wire.Batch{BatchID: id, Readings: []wire.Reading{{Sensor: "p/l/a/x", Time: at, Value: 1}}}
	}
	// Warm the sensor cache so the stuck batch blocks in its transaction.
	if _, err := f.svc.Ingest(ctx, edge, batch("warm")); err != nil {
		t.Fatal(err)
	}

	// Another session makes the database "slow": it locks edge_batches.
	blocker, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(ctx)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE edge_batches IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var stuckErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, stuckErr = f.svc.Ingest(ctx, edge, batch("stuck"))
	}()
	// Wait until the stuck batch waits on the lock (it holds the slot).
	for f.count(t, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'edge_batches' AND NOT l.granted`) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	_, err = f.svc.Ingest(ctx, edge, batch("second"))
	if !errors.Is(err, ErrOverloaded) || RetryAfter(err) != 3*time.Second {
		t.Fatalf("second batch while the slot is busy: %v (retry after %s), want ErrOverloaded after 3s", err, RetryAfter(err))
	}
	wg.Wait()
	if !errors.Is(stuckErr, ErrOverloaded) {
		t.Fatalf("batch stuck past the write deadline: %v, want ErrOverloaded", stuckErr)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := f.svc.Ingest(ctx, edge, batch("stuck"))
	if err != nil || resp.Duplicate != 1 {
		t.Fatalf("retry once the database is fast: %+v, %v", resp, err)
	}
	if got := testutil.ToFloat64(f.svc.m.batches.WithLabelValues("overloaded")); got != 2 {
		t.Errorf("overloaded batches metric %v, want 2", got)
	}
	if got := testutil.ToFloat64(f.svc.m.queueDepth); got != 0 {
		t.Errorf("queue depth %v after everything finished, want 0", got)
	}
}

// TestIngestConcurrentRetry: the same batch delivered twice at the same
// time (a retry racing the original) is stored once.
func TestIngestConcurrentRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, store.Options{}, Config{})
	edge := f.edge(t, "edge-a")
	mk := func() *wire.Batch {
		b := &wire.Batch{BatchID: "race"}
		for i := range 500 {
			b.Readings = append(b.Readings, wire.Reading{Sensor: "p/l/a/x", Time: f.now.Add(-time.Duration(i+1) * time.Second).UnixNano(), Value: float64(i)})
		}
		return b
	}
	var wg sync.WaitGroup
	resps := make([]*wire.IngestResponse, 4)
	errs := make([]error, 4)
	for i := range resps {
		wg.Go(func() { resps[i], errs[i] = f.svc.Ingest(ctx, edge, mk()) })
	}
	wg.Wait()
	for i := range resps {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		if resps[i].Accepted != 500 || resps[i].Duplicate != 0 {
			t.Fatalf("delivery %d: %+v, want the first outcome (500 accepted)", i, resps[i])
		}
	}
	if n := f.count(t, `SELECT count(*) FROM readings`); n != 500 {
		t.Fatalf("readings %d, want 500", n)
	}
	if got := testutil.ToFloat64(f.svc.m.batches.WithLabelValues("replayed")); got != 3 {
		t.Fatalf("replayed %v, want 3", got)
	}
}
