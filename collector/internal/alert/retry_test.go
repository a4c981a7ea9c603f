package alert

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// retryEnv is a migrated database with one edge whose batches go through
// store.WriteBatch with the processor's hook, as ingest does.
type retryEnv struct {
	t    *testing.T
	dsn  string
	db   *store.DB
	edge string
	seq  uint64
}

func newRetryEnv(t *testing.T) *retryEnv {
	t.Helper()
	dsn := testenv.Postgres(t)
	db := openDB(t, dsn)
	ctx := context.Background()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e, _, err := db.RegisterEdge(ctx, "edge-retry")
	if err != nil {
		t.Fatal(err)
	}
	return &retryEnv{t: t, dsn: dsn, db: db, edge: e.ID}
}

// ingest stores evs as one batch whose events are processed live by p.
func (r *retryEnv) ingest(p *Processor, evs []wire.Event) {
	r.t.Helper()
	first := r.seq + 1
	for i := range evs {
		r.seq++
		evs[i].Seq = r.seq
	}
	_, err := r.db.WriteBatch(context.Background(), &store.BatchWrite{EdgeID: r.edge, BatchID: fmt.Sprintf("b%d", first),
		FirstSeq: first, LastSeq: r.seq, Events: evs, NumEvents: len(evs), OnEvents: p.ProcessEvents})
	if err != nil {
		r.t.Fatalf("ingest: %v", err)
	}
}

func (r *retryEnv) exec(sql string) {
	r.t.Helper()
	if _, err := r.db.Pool().Exec(context.Background(), sql); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
}

// eventRow is what the events table says about one event's processing.
type eventRow struct {
	Sensor    string
	Seq       int64
	Processed bool
	Attempts  int
	Failed    bool
	LastError string
}

func (r *retryEnv) events() []eventRow {
	r.t.Helper()
	rows, err := r.db.Pool().Query(context.Background(), `SELECT sensor, seq, processed_at IS NOT NULL, attempts,
		failed_at IS NOT NULL, coalesce(last_error, '') FROM events ORDER BY seq`)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	var out []eventRow
	for rows.Next() {
		var e eventRow
		if err := rows.Scan(&e.Sensor, &e.Seq, &e.Processed, &e.Attempts, &e.Failed, &e.LastError); err != nil {
			r.t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// transitions counts audit rows by sensor and transition.
func (r *retryEnv) transitions() map[string]int {
	r.t.Helper()
	rows, err := r.db.Pool().Query(context.Background(), `SELECT a.sensor, e.transition, count(*) FROM alert_events e
		JOIN alerts a ON a.id = e.alert_id GROUP BY 1, 2`)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s, tr string
		var n int
		if err := rows.Scan(&s, &tr, &n); err != nil {
			r.t.Fatal(err)
		}
		out[s+" "+tr] = n
	}
	return out
}

// recent is an event time shortly before now: a clear's time starts the
// auto-resolve count, which must not be due in these tests.
func recent() time.Time { return time.Now().Add(-time.Minute).Truncate(time.Millisecond) }

func sensorEvent(sensor string, st wire.EventState, at time.Time) wire.Event {
	ev := limitEvent(st, "H", wire.SeverityMajor, at, 80)
	ev.Sensor = sensor
	return ev
}

// errorsOnly drops the last_error text, compared separately.
func errorsOnly(rows []eventRow) []eventRow {
	out := make([]eventRow, len(rows))
	for i, e := range rows {
		e.LastError = ""
		out[i] = e
	}
	return out
}

// TestRetryFailedEvents: a batch whose events failed alert processing
// (a constraint rejects one sensor's alert, so the batch's alert changes
// are rolled back) keeps its events unprocessed with the attempt
// recorded; once the cause is gone the next sweep after the grace
// processes them, in event-time order per sensor, and opens each alert
// exactly once; later sweeps change nothing.
func TestRetryFailedEvents(t *testing.T) {
	r := newRetryEnv(t)
	ctx := context.Background()
	t0 := recent()
	reg := prometheus.NewRegistry()
	p := New(r.db.Pool(), Config{Policy: DefaultPolicy()}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	r.exec(`ALTER TABLE alerts ADD CONSTRAINT test_block CHECK (sensor <> 'p/l/a/temp')`)
	r.ingest(p, []wire.Event{
		sensorEvent("p/l/a/temp", wire.EventCleared, t0.Add(10*time.Second)), // after the raise, in event time
		sensorEvent("p/l/b/temp", wire.EventRaised, t0.Add(5*time.Second)),
		sensorEvent("p/l/a/temp", wire.EventRaised, t0),
	})
	got := r.events()
	want := []eventRow{{"p/l/a/temp", 1, false, 1, false, ""}, {"p/l/b/temp", 2, false, 1, false, ""}, {"p/l/a/temp", 3, false, 1, false, ""}}
	if d := cmp.Diff(want, errorsOnly(got)); d != "" {
		t.Fatalf("events after the failed live attempt (-want +got):\n%s", d)
	}
	if !strings.Contains(got[0].LastError, "test_block") {
		t.Errorf("last_error %q does not name the failed constraint", got[0].LastError)
	}
	if n := len(r.transitions()); n != 0 {
		t.Fatalf("%d audit rows after the failed attempt, want 0", n)
	}

	// Within the grace period the sweeper leaves them alone.
	if n, err := p.Sweep(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("sweep within the grace: %d changes, err %v; want 0", n, err)
	}
	r.exec(`ALTER TABLE alerts DROP CONSTRAINT test_block`)
	later := time.Now().Add(time.Minute)
	if n, err := p.Sweep(ctx, later); err != nil || n != 3 {
		t.Fatalf("sweep after the grace: %d changes, err %v; want 3 events; %v %v", n, err, r.transitions(), r.events())
	}
	for range 2 {
		if n, err := p.Sweep(ctx, later); err != nil || n != 0 {
			t.Fatalf("later sweep: %d changes, err %v; want 0", n, err)
		}
	}
	want = []eventRow{{"p/l/a/temp", 1, true, 1, false, ""}, {"p/l/b/temp", 2, true, 1, false, ""}, {"p/l/a/temp", 3, true, 1, false, ""}}
	if d := cmp.Diff(want, errorsOnly(r.events())); d != "" {
		t.Errorf("events after the retry (-want +got):\n%s", d)
	}
	wantTr := map[string]int{"p/l/a/temp opened": 1, "p/l/a/temp cleared": 1, "p/l/b/temp opened": 1}
	if d := cmp.Diff(wantTr, r.transitions()); d != "" {
		t.Errorf("audit trail (-want +got):\n%s", d)
	}
	a, _, err := p.List(ctx, Filter{Sensor: "p/l/a/temp"}, "", 10)
	if err != nil || len(a) != 1 || a[0].State != StateOpen || a[0].ClearSince.IsZero() || a[0].Count != 1 {
		t.Errorf("alert of the raised then cleared sensor: %+v, %v; want one open alert, clear since set", a, err)
	}
	if got := testutil.ToFloat64(p.m.eventsRetried); got != 3 {
		t.Errorf("retries counted %v, want 3", got)
	}
	if got := testutil.ToFloat64(p.m.eventsFailed); got != 0 {
		t.Errorf("failed events counted %v, want 0", got)
	}
}

// TestRetryTwoSweepers: two collectors (two pools) retry the same failed
// events at once. Every event is processed once, each alert is opened
// once and cleared once, and a clear never overtakes its raise even
// when the two sit in different replicas' claims.
func TestRetryTwoSweepers(t *testing.T) {
	r := newRetryEnv(t)
	ctx := context.Background()
	t0 := recent()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pA := New(r.db.Pool(), Config{Policy: DefaultPolicy()}, nil, log, nil)
	pB := New(openDB(t, r.dsn).Pool(), Config{Policy: DefaultPolicy()}, nil, log, nil)
	const n = 120 // sensors; 2n events, more than one retry batch
	r.exec(`ALTER TABLE alerts ADD CONSTRAINT test_block CHECK (false)`)
	var evs []wire.Event
	for i := range n {
		s := fmt.Sprintf("p/l/a%d/temp", i)
		evs = append(evs, sensorEvent(s, wire.EventRaised, t0.Add(time.Duration(i)*time.Millisecond)),
			sensorEvent(s, wire.EventCleared, t0.Add(time.Hour+time.Duration(i)*time.Millisecond)))
	}
	r.ingest(pA, evs)
	r.exec(`ALTER TABLE alerts DROP CONSTRAINT test_block`)
	later := time.Now().Add(time.Minute)
	total := 0
	for round := 0; round < 10 && total < 2*n; round++ {
		var wg sync.WaitGroup
		counts := make([]int, 2)
		for i, p := range []*Processor{pA, pB} {
			wg.Go(func() {
				c, err := p.Sweep(ctx, later)
				if err != nil {
					t.Error(err)
				}
				counts[i] = c
			})
		}
		wg.Wait()
		total += counts[0] + counts[1]
	}
	if total != 2*n {
		t.Fatalf("sweeps processed %d events, want %d", total, 2*n)
	}
	tr := r.transitions()
	for i := range n {
		s := fmt.Sprintf("p/l/a%d/temp", i)
		if tr[s+" opened"] != 1 || tr[s+" cleared"] != 1 || len(tr) != 2*n {
			t.Fatalf("%s: opened %d, cleared %d (of %d kinds of audit rows); want 1 and 1", s, tr[s+" opened"], tr[s+" cleared"], len(tr))
		}
	}
	var unprocessed, wrongAttempts, alerts, cleared int
	r.db.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE processed_at IS NULL), count(*) FILTER (WHERE attempts <> 1)
		FROM events`).Scan(&unprocessed, &wrongAttempts)
	r.db.Pool().QueryRow(ctx, `SELECT count(*), count(clear_since) FROM alerts`).Scan(&alerts, &cleared)
	if unprocessed != 0 || wrongAttempts != 0 || alerts != n || cleared != n {
		t.Errorf("unprocessed events %d, events without exactly one failed attempt %d, alerts %d, cleared %d; want 0, 0, %d, %d",
			unprocessed, wrongAttempts, alerts, cleared, n, n)
	}
}

// TestPoisonEvent: an event that keeps failing is marked failed after
// EventMaxAttempts, with its error, counted and logged at Error; the
// other events go through meanwhile, and the one after it on the same
// sensor waits for it and then goes through too.
func TestPoisonEvent(t *testing.T) {
	r := newRetryEnv(t)
	ctx := context.Background()
	t0 := recent()
	var logs bytes.Buffer
	var logMu sync.Mutex
	reg := prometheus.NewRegistry()
	p := New(r.db.Pool(), Config{Policy: DefaultPolicy(), EventMaxAttempts: 3},
		nil, slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil)), reg)
	r.exec(`ALTER TABLE alerts ADD CONSTRAINT test_poison CHECK (last_value <> 666)`)
	poison := sensorEvent("p/l/poison/temp", wire.EventRaised, t0)
	poison.Value = 666
	after := sensorEvent("p/l/poison/temp", wire.EventRaised, t0.Add(time.Second))
	r.ingest(p, []wire.Event{poison, after, sensorEvent("p/l/good/temp", wire.EventRaised, t0)})
	r.ingest(p, []wire.Event{sensorEvent("p/l/late/temp", wire.EventRaised, t0)}) // processed live
	later := time.Now().Add(time.Minute)

	// Attempt 2: the good event goes through, the poison fails again and
	// the event after it waits.
	if n, err := p.Sweep(ctx, later); err != nil || n != 1 {
		t.Fatalf("sweep 1: %d changes, err %v; want 1", n, err)
	}
	// Attempt 3: the poison is given up and the event after it goes on.
	if n, err := p.Sweep(ctx, later); err != nil || n != 1 {
		t.Fatalf("sweep 2: %d changes, err %v; want 1", n, err)
	}
	if n, err := p.Sweep(ctx, later); err != nil || n != 0 {
		t.Fatalf("sweep 3: %d changes, err %v; want 0", n, err)
	}
	got := r.events()
	want := []eventRow{
		{"p/l/poison/temp", 1, false, 3, true, ""},
		{"p/l/poison/temp", 2, true, 1, false, ""},
		{"p/l/good/temp", 3, true, 1, false, ""},
		{"p/l/late/temp", 4, true, 0, false, ""},
	}
	if d := cmp.Diff(want, errorsOnly(got)); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if !strings.Contains(got[0].LastError, "test_poison") {
		t.Errorf("poison event's last_error %q does not name the constraint", got[0].LastError)
	}
	if got := testutil.ToFloat64(p.m.eventsFailed); got != 1 {
		t.Errorf("smartmaint_collector_alert_events_failed_total = %v, want 1", got)
	}
	if c, err := testutil.GatherAndCount(reg, "smartmaint_collector_alert_events_failed_total"); err != nil || c != 1 {
		t.Errorf("failed-events metric not registered: %d %v", c, err)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if strings.Count(out, "level=ERROR msg=\"event given up") != 1 || !strings.Contains(out, "sensor=p/l/poison/temp") {
		t.Errorf("want one Error log line giving up the poison event, got:\n%s", out)
	}
	wantTr := map[string]int{"p/l/good/temp opened": 1, "p/l/poison/temp opened": 1, "p/l/late/temp opened": 1}
	if d := cmp.Diff(wantTr, r.transitions()); d != "" {
		t.Errorf("audit trail (-want +got):\n%s", d)
	}
}

// TestRetryWaitsForOlderEvent: an event the sweeper could retry waits
// while an older event of its sensor and rule is still pending but not
// claimed by this sweep (here: received within the grace), so event-time
// order per sensor holds.
func TestRetryWaitsForOlderEvent(t *testing.T) {
	r := newRetryEnv(t)
	ctx := context.Background()
	t0 := recent()
	p := New(r.db.Pool(), Config{Policy: DefaultPolicy()}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	r.exec(`ALTER TABLE alerts ADD CONSTRAINT test_block CHECK (false)`)
	r.ingest(p, []wire.Event{sensorEvent("p/l/a/temp", wire.EventCleared, t0.Add(30*time.Second)),
		sensorEvent("p/l/x/temp", wire.EventRaised, t0)})
	r.exec(`UPDATE events SET received_at = received_at - interval '1 hour'`)
	r.ingest(p, []wire.Event{sensorEvent("p/l/a/temp", wire.EventRaised, t0)})
	r.exec(`ALTER TABLE alerts DROP CONSTRAINT test_block`)
	// Only the first batch is past the grace: the other sensor's event
	// goes through, the clear waits for the older raise.
	if n, err := p.Sweep(ctx, time.Now().Add(10*time.Second)); err != nil || n != 1 {
		t.Fatalf("sweep with the older raise pending: %d changes, err %v; want 1", n, err)
	}
	if n, err := p.Sweep(ctx, time.Now().Add(time.Minute)); err != nil || n != 2 {
		t.Fatalf("sweep after the grace: %d changes, err %v; want 2", n, err)
	}
	a, _, err := p.List(ctx, Filter{Sensor: "p/l/a/temp"}, "", 10)
	if err != nil || len(a) != 1 || a[0].ClearSince.IsZero() {
		t.Errorf("alert: %+v, %v; want one alert, raised then cleared", a, err)
	}
}

// lockedWriter serialises writes to a shared buffer.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
