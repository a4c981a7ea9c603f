package alert

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

func openDB(t testing.TB, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn, store.Options{Timescale: store.TimescaleOff,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// process runs ProcessEvents in its own transaction.
func process(t *testing.T, p *Processor, db *store.DB, evs []wire.Event) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error { return p.processEvents(ctx, tx, "edge", evs) })
	if err != nil {
		t.Fatal(err)
	}
}

// TestSweepTwoReplicas: two collectors (two pools, two processors) sweep
// the same due alerts at once; each alert is escalated exactly once and
// auto-resolved exactly once.
func TestSweepTwoReplicas(t *testing.T) {
	dsn := testenv.Postgres(t)
	dbA, dbB := openDB(t, dsn), openDB(t, dsn)
	if err := dbA.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var clock struct {
		sync.Mutex
		t time.Time
	}
	clock.t = t0
	now := func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.t }
	pol := Policy{AutoResolveAfter: 10 * time.Minute, EscalateAfter: 30 * time.Minute, MaxEscalations: 1}
	reg := prometheus.NewRegistry()
	pA := New(dbA.Pool(), Config{Policy: pol, Now: now}, nil, log, reg)
	pB := New(dbB.Pool(), Config{Policy: pol, Now: now}, nil, log, nil)
	const n = 300 // more than one sweep batch
	var evs []wire.Event
	for i := range n {
		ev := limitEvent(wire.EventRaised, "H", wire.SeverityMajor, t0, 80)
		ev.Sensor = fmt.Sprintf("p/l/a%d/temp", i)
		evs = append(evs, ev)
	}
	process(t, pA, dbA, evs)
	if got := testutil.ToFloat64(pA.m.transitions.WithLabelValues("opened")); got != n {
		t.Fatalf("opened %v alerts, want %d", got, n)
	}
	if c, err := testutil.GatherAndCount(reg, "smartmaint_collector_alerts"); err != nil || c != 8 {
		t.Errorf("alerts gauge series: %d %v", c, err)
	}
	sweepBoth := func(at time.Time) int {
		var wg sync.WaitGroup
		counts := make([]int, 2)
		for i, p := range []*Processor{pA, pB} {
			wg.Go(func() {
				c, err := p.Sweep(context.Background(), at)
				if err != nil {
					t.Error(err)
				}
				counts[i] = c
			})
		}
		wg.Wait()
		return counts[0] + counts[1]
	}
	if got := sweepBoth(t0.Add(29 * time.Minute)); got != 0 {
		t.Errorf("early sweep made %d transitions", got)
	}
	if got := sweepBoth(t0.Add(31 * time.Minute)); got != n {
		t.Errorf("escalation sweep made %d transitions, want %d", got, n)
	}
	if got := sweepBoth(t0.Add(90 * time.Minute)); got != 0 {
		t.Errorf("max escalations 1, but a later sweep made %d transitions", got)
	}
	// All clear at +95 min; resolved 10 minutes later.
	clock.Lock()
	clock.t = t0.Add(95 * time.Minute)
	clock.Unlock()
	for i := range evs {
		evs[i].State, evs[i].Time = wire.EventCleared, t0.Add(95*time.Minute).UnixNano()
	}
	process(t, pB, dbB, evs)
	if got := sweepBoth(t0.Add(104 * time.Minute)); got != 0 {
		t.Errorf("sweep before auto-resolve made %d transitions", got)
	}
	if got := sweepBoth(t0.Add(105 * time.Minute)); got != n {
		t.Errorf("auto-resolve sweep made %d transitions, want %d", got, n)
	}
	rows, err := dbA.Pool().Query(context.Background(), `SELECT transition, count(*), count(DISTINCT alert_id) FROM alert_events GROUP BY 1 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int{}
	for rows.Next() {
		var tr string
		var c, d int
		rows.Scan(&tr, &c, &d)
		got[tr] = [2]int{c, d}
	}
	for _, tr := range []string{"opened", "escalated", "cleared", "auto_resolved"} {
		if got[tr] != [2]int{n, n} {
			t.Errorf("%s: %v rows/alerts, want %d each", tr, got[tr], n)
		}
	}
	list, next, err := pA.List(context.Background(), Filter{States: []State{StateResolved}, Site: "p"}, "", 200)
	if err != nil || len(list) != 200 || next == "" {
		t.Fatalf("list page 1: %d %q %v", len(list), next, err)
	}
	rest, next2, err := pA.List(context.Background(), Filter{States: []State{StateResolved}, Site: "p"}, next, 200)
	if err != nil || len(rest) != n-200 || next2 != "" || rest[0].ID >= list[199].ID {
		t.Fatalf("list page 2: %d %q %v", len(rest), next2, err)
	}
	if rest[0].ResolvedBy != SystemActor || rest[0].EscalationLevel != 1 {
		t.Errorf("resolved alert: %+v", rest[0])
	}
}

type failingNotifier struct{}

func (failingNotifier) Enqueue(context.Context, DBTX, *Notification) error {
	return fmt.Errorf("%w: outbox refused", ErrInvalid)
}

// TestPermanentErrorKeepsBatch: when alerts cannot be written for a
// reason retrying will not fix, the alert changes are rolled back to the
// savepoint and the batch's transaction goes on (its readings are kept).
func TestPermanentErrorKeepsBatch(t *testing.T) {
	db := openDB(t, testenv.Postgres(t))
	ctx := context.Background()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	p := New(db.Pool(), Config{Policy: DefaultPolicy(), Now: func() time.Time { return t0 }}, failingNotifier{},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	var alerts int
	err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO storage_settings (key, value) VALUES ('batch-marker', 'kept')`); err != nil {
			return err
		}
		ev := limitEvent(wire.EventRaised, "H", wire.SeverityMajor, t0, 80)
		if err := p.processEvents(ctx, tx, "edge", []wire.Event{ev}); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM alerts`).Scan(&alerts)
	})
	if err != nil {
		t.Fatalf("batch transaction failed: %v", err)
	}
	var marker string
	db.Pool().QueryRow(ctx, `SELECT value FROM storage_settings WHERE key = 'batch-marker'`).Scan(&marker)
	if alerts != 0 || marker != "kept" || testutil.ToFloat64(p.m.eventErrors) != 1 {
		t.Errorf("alerts %d (want 0: rolled back), batch write %q (want kept), errors %v", alerts, marker, testutil.ToFloat64(p.m.eventErrors))
	}
}
