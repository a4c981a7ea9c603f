package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// sweepBatch bounds the alerts one sweep transaction locks.
const sweepBatch = 200

// Sweep first retries events that failed alert processing (retryEvents:
// at most one bounded batch, received at least EventRetryGrace before
// now), then applies the timed transitions (auto-resolve, escalation)
// that are due at now, in transactions of at most sweepBatch alerts. Due
// alerts and events are claimed with FOR UPDATE SKIP LOCKED, so several
// collector replicas may sweep at once: each is handled by exactly one,
// and an alert being changed by ingest or a person is simply left for the
// next sweep. It returns the number of events retried successfully plus
// the transitions made.
func (p *Processor) Sweep(ctx context.Context, now time.Time) (int, error) {
	now = now.UTC()
	total, rerr := p.retryEvents(ctx, now)
	if ctx.Err() != nil {
		return total, rerr
	}
	for {
		n, claimed, err := p.sweepOnce(ctx, now)
		total += n
		if err != nil || claimed < sweepBatch {
			return total, errors.Join(rerr, err)
		}
	}
}

func (p *Processor) sweepOnce(ctx context.Context, now time.Time) (done, claimed int, err error) {
	pol := p.cfg.Policy
	if pol.AutoResolveAfter <= 0 && (pol.EscalateAfter <= 0 || pol.MaxEscalations <= 0) {
		return 0, 0, nil
	}
	// A disabled rule gets a cut-off no row can reach.
	never := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	resolveBefore, escalateBefore := never, never
	if pol.AutoResolveAfter > 0 {
		resolveBefore = now.Add(-pol.AutoResolveAfter)
	}
	if pol.EscalateAfter > 0 {
		escalateBefore = now.Add(-pol.EscalateAfter)
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+alertCols+` FROM alerts
			WHERE state <> 'resolved' AND (
				(clear_since IS NOT NULL AND clear_since <= $1)
				OR (state = 'open' AND escalation_level < $3 AND coalesce(escalated_at, created_at) <= $2))
			ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED`,
			resolveBefore, escalateBefore, pol.MaxEscalations, sweepBatch)
		if err != nil {
			return fmt.Errorf("cannot claim due alerts: %w", err)
		}
		var due []*Alert
		for rows.Next() {
			a, err := scanAlert(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("cannot read due alert: %w", err)
			}
			due = append(due, a)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot claim due alerts: %w", err)
		}
		claimed = len(due)
		for _, a := range due {
			tr := pol.Due(a, now)
			if tr == None {
				continue
			}
			pol.Fire(a, tr, now)
			if err := updateAlert(ctx, tx, a); err != nil {
				return err
			}
			if err := p.record(ctx, tx, a, tr, SystemActor, "", now); err != nil {
				return err
			}
			done++
		}
		return nil
	})
	if err != nil {
		return 0, claimed, err
	}
	return done, claimed, nil
}

// Sweepable retries failed events and applies due timed transitions;
// *Processor is one.
type Sweepable interface {
	Sweep(ctx context.Context, now time.Time) (int, error)
}

// DefaultSweepInterval: how often due alerts and failed events are
// looked for. Auto-resolve and escalation happen at most this late; 15 s is well below any
// sensible escalation time and costs one indexed query.
const DefaultSweepInterval = 15 * time.Second

// Sweeper runs Sweep every Interval until its context ends.
type Sweeper struct {
	S        Sweepable
	Interval time.Duration
	Log      *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Run sweeps at start and then every Interval; errors are logged and
// retried at the next tick. It returns when ctx is done.
func (w *Sweeper) Run(ctx context.Context) {
	iv := w.Interval
	if iv <= 0 {
		iv = DefaultSweepInterval
	}
	now := w.Now
	if now == nil {
		now = time.Now
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		if n, err := w.S.Sweep(ctx, now()); err != nil && ctx.Err() == nil {
			w.Log.Warn("alert sweep failed; will retry", "component", "alert", "err", err)
		} else if n > 0 {
			w.Log.Info("alert sweep", "component", "alert", "changes", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
