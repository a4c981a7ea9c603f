package alert

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// BenchmarkProcessEvents: a batch of 10 events (5 sensors × raise/clear)
// applied to alerts in one transaction, as ingest does.
func BenchmarkProcessEvents(b *testing.B) {
	db := openDB(b, testenv.Postgres(b))
	ctx := context.Background()
	if err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	p := New(db.Pool(), Config{Policy: DefaultPolicy()}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		evs := make([]wire.Event, 0, 10)
		for s := range 5 {
			for _, st := range []wire.EventState{wire.EventRaised, wire.EventCleared} {
				ev := limitEvent(st, "H", wire.SeverityMajor, time.Now(), 80)
				ev.Sensor = fmt.Sprintf("p/l/a%d/temp", s)
				evs = append(evs, ev)
			}
		}
		if err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error { return p.processEvents(ctx, tx, "edge", evs) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "events/s")
}
