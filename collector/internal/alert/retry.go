package alert

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// retryBatch bounds the events one sweep retries.
const retryBatch = 100

// pendingEvent is an unprocessed event claimed for a retry.
type pendingEvent struct {
	id       int64
	edge     string
	attempts int
	key      string // rule key
	ev       wire.Event
}

// givenUp is an event marked failed by a retry, reported after commit.
type givenUp struct {
	p   *pendingEvent
	err error
}

// retryEvents retries, through applyEvents (the path of live
// processing), up to retryBatch events that are still unprocessed and not
// given up, received at least EventRetryGrace before now. They are
// claimed with FOR UPDATE SKIP LOCKED, so replicas never retry the same
// event, and applied per (sensor, rule) in event-time order, each in its
// own savepoint: a failure rolls back that event only. Order is kept: an
// event waits while an older one of its sensor and rule is still pending
// (failed in this sweep, or held by another replica). A failed attempt is
// counted on the event (attempts counts failures only); at EventMaxAttempts it is marked failed (failed_at,
// last_error), logged at Error and counted, and no longer blocks the
// events after it. Events with seq 0 are not retried: the live path
// identifies events by edge and seq, so it cannot mark them processed and
// a retry could apply them twice.
func (p *Processor) retryEvents(ctx context.Context, now time.Time) (processed int, err error) {
	var failed []givenUp
	var retried int
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		processed, retried, failed = 0, 0, nil
		claimed, err := claimPending(ctx, tx, now.Add(-p.cfg.EventRetryGrace))
		if err != nil || len(claimed) == 0 {
			return err
		}
		blockers, err := pendingBlockers(ctx, tx, claimed)
		if err != nil {
			return err
		}
		blocked := map[string]bool{} // sensor + "\x00" + rule key that failed in this sweep
		for _, pe := range claimed {
			k := pe.ev.Sensor + "\x00" + pe.key
			if blocked[k] {
				continue
			}
			if b, ok := blockers[k]; ok && b <= pe.ev.Time {
				continue
			}
			retried++
			err := p.applyEvents(ctx, tx, []wire.Event{pe.ev}, now, func() error {
				_, err := tx.Exec(ctx, `UPDATE events SET processed_at = $2 WHERE id = $1`, pe.id, now)
				return err
			})
			if err == nil {
				processed++
				continue
			}
			var rb *rolledBack
			if !errors.As(err, &rb) {
				return err // temporary or the transaction is broken: retried at the next sweep
			}
			pe.attempts++
			var failedAt *time.Time
			if pe.attempts >= p.cfg.EventMaxAttempts {
				failedAt = &now
				failed = append(failed, givenUp{pe, err})
			} else {
				blocked[k] = true
				p.log.Warn("retry of event failed; will retry", "event", pe.id, "edge", pe.edge, "seq", pe.ev.Seq,
					"sensor", pe.ev.Sensor, "attempts", pe.attempts, "err", err)
			}
			if _, err := tx.Exec(ctx, `UPDATE events SET attempts = $2, last_error = $3, failed_at = $4 WHERE id = $1`,
				pe.id, pe.attempts, err.Error(), failedAt); err != nil {
				return fmt.Errorf("cannot record failed attempt on event %d: %w", pe.id, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cannot retry unprocessed events: %w", err)
	}
	p.m.eventsRetried.Add(float64(retried))
	for _, g := range failed {
		p.m.eventsFailed.Inc()
		p.log.Error("event given up: it could not be turned into an alert", "event", g.p.id, "edge", g.p.edge,
			"seq", g.p.ev.Seq, "sensor", g.p.ev.Sensor, "rule", g.p.ev.Rule, "attempts", g.p.attempts, "err", g.err)
	}
	return processed, nil
}

// claimPending locks up to retryBatch pending events received before
// cutoff, oldest event time first, and returns them in (sensor, rule,
// time) order: the order and lock order of live processing.
func claimPending(ctx context.Context, tx pgx.Tx, cutoff time.Time) ([]*pendingEvent, error) {
	rows, err := tx.Query(ctx, `SELECT id, edge_id, attempts, sensor, asset, kind, state, severity, rule, time,
			window_start, window_end, value, score, threshold, model, seq
		FROM events WHERE processed_at IS NULL AND failed_at IS NULL AND seq > 0 AND received_at <= $1
		ORDER BY time, id LIMIT $2 FOR UPDATE SKIP LOCKED`, cutoff, retryBatch)
	if err != nil {
		return nil, fmt.Errorf("cannot claim unprocessed events: %w", err)
	}
	var out []*pendingEvent
	for rows.Next() {
		var pe pendingEvent
		var kind, state, sev int16
		var t, ws, we time.Time
		var seq int64
		e := &pe.ev
		if err := rows.Scan(&pe.id, &pe.edge, &pe.attempts, &e.Sensor, &e.Asset, &kind, &state, &sev, &e.Rule, &t,
			&ws, &we, &e.Value, &e.Score, &e.Threshold, &e.Model, &seq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cannot read unprocessed event: %w", err)
		}
		e.Kind, e.State, e.Severity = wire.EventKind(kind), wire.EventState(state), wire.Severity(sev)
		e.Time, e.WindowStart, e.WindowEnd, e.Seq = t.UnixNano(), ws.UnixNano(), we.UnixNano(), uint64(seq)
		_, pe.key = RuleKey(e)
		out = append(out, &pe)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot claim unprocessed events: %w", err)
	}
	slices.SortStableFunc(out, func(a, b *pendingEvent) int {
		return cmp.Or(strings.Compare(a.ev.Sensor, b.ev.Sensor), strings.Compare(a.key, b.key),
			cmp.Compare(a.ev.Time, b.ev.Time), cmp.Compare(a.id, b.id))
	})
	return out, nil
}

// pendingBlockers returns, per sensor and rule key of the claimed events,
// the earliest event time of a pending event not claimed here (held by
// another replica, or not yet past the grace): claimed events from that
// time on must wait for it.
func pendingBlockers(ctx context.Context, tx pgx.Tx, claimed []*pendingEvent) (map[string]int64, error) {
	ids := make([]int64, len(claimed))
	var sensors []string
	for i, pe := range claimed {
		ids[i] = pe.id
		if i == 0 || pe.ev.Sensor != claimed[i-1].ev.Sensor {
			sensors = append(sensors, pe.ev.Sensor)
		}
	}
	rows, err := tx.Query(ctx, `SELECT sensor, kind, rule, min(time) FROM events
		WHERE processed_at IS NULL AND failed_at IS NULL AND seq > 0 AND sensor = ANY($1) AND NOT (id = ANY($2))
		GROUP BY sensor, kind, rule`, sensors, ids)
	if err != nil {
		return nil, fmt.Errorf("cannot look for older unprocessed events: %w", err)
	}
	out := map[string]int64{}
	for rows.Next() {
		var ev wire.Event
		var kind int16
		var t time.Time
		if err := rows.Scan(&ev.Sensor, &kind, &ev.Rule, &t); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cannot look for older unprocessed events: %w", err)
		}
		ev.Kind = wire.EventKind(kind)
		_, key := RuleKey(&ev)
		k := ev.Sensor + "\x00" + key
		if b, ok := out[k]; !ok || t.UnixNano() < b {
			out[k] = t.UnixNano()
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot look for older unprocessed events: %w", err)
	}
	return out, nil
}
