package alert

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// DBTX is what the alert code needs of a connection in a transaction:
// *pgx.Conn and pgx.Tx both have it.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Notification is what is sent about one transition. It is the outbox
// payload (JSON) and the item of every channel's message.
type Notification struct {
	// Key is the idempotency key: the same for every channel and every
	// redelivery of this transition ("alert-<id>-<event id>").
	Key        string     `json:"idempotency_key"`
	AlertID    int64      `json:"alert_id"`
	EventID    int64      `json:"event_id"`
	Transition Transition `json:"transition"`
	State      State      `json:"state"`
	Severity   string     `json:"severity"`
	Sensor     string     `json:"sensor"`
	Site       string     `json:"site"`
	Asset      string     `json:"asset"`
	Kind       string     `json:"kind"`
	Rule       string     `json:"rule"`
	Value      float64    `json:"value"`
	Threshold  float64    `json:"threshold"`
	PeakScore  float32    `json:"peak_score"`
	Count      int        `json:"count"`
	// Since is when the condition began (edge time); At when this
	// transition happened (server time).
	Since           time.Time  `json:"since"`
	At              time.Time  `json:"at"`
	Actor           string     `json:"actor"`
	Note            string     `json:"note,omitempty"`
	EscalationLevel int        `json:"escalation_level"`
	LimitValue      *float64   `json:"limit_value,omitempty"`
	LimitETA        *time.Time `json:"limit_eta,omitempty"`
	// URL links to the alert in the collector's API.
	URL string `json:"url"`
}

// Summary is a one-line human description: what, where, how bad, since
// when.
func (n *Notification) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s %s alert on %s", strings.ToUpper(n.Severity), n.Transition, n.Kind, n.Sensor)
	if n.Rule != "" {
		fmt.Fprintf(&b, " (%s)", n.Rule)
	}
	if n.Asset != "" || n.Site != "" {
		fmt.Fprintf(&b, " at %s/%s", n.Site, n.Asset)
	}
	fmt.Fprintf(&b, ": value %g, threshold %g, since %s", n.Value, n.Threshold, n.Since.UTC().Format(time.RFC3339))
	if n.LimitETA != nil && n.LimitValue != nil {
		fmt.Fprintf(&b, "; expected to reach %g at %s", *n.LimitValue, n.LimitETA.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// Notifier queues notifications in the caller's transaction (the
// transactional outbox). Implemented by notify.Outbox; safe for concurrent
// use.
type Notifier interface {
	Enqueue(ctx context.Context, tx DBTX, n *Notification) error
}

// Config configures the Processor.
type Config struct {
	Policy Policy
	// BaseURL is the collector's public base URL, for links in
	// notifications ("https://collector.example.com").
	BaseURL string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// EventMaxAttempts is how many times an event is tried (live, then
	// by the sweeper) before it is marked failed and no longer retried
	// (DefaultEventMaxAttempts when 0). The sweeper retries an event
	// that failed live at least once, whatever this is.
	EventMaxAttempts int
	// EventRetryGrace is how old (received) an unprocessed event must be
	// before the sweeper retries it, so it never competes with the
	// ingest transaction that stored it (DefaultEventRetryGrace when 0).
	EventRetryGrace time.Duration
}

// Event retry defaults: five attempts are a minute or so of sweeps, enough
// to ride out a short disturbance, few enough that a poison event is
// reported soon; the grace is far longer than any ingest transaction.
const (
	DefaultEventMaxAttempts = 5
	DefaultEventRetryGrace  = 30 * time.Second
)

// Processor applies events and timed transitions to alerts in PostgreSQL.
// It is safe for concurrent use.
type Processor struct {
	pool   *pgxpool.Pool
	cfg    Config
	notify Notifier
	log    *slog.Logger
	m      *metrics
}

// New builds a processor on pool. notifier may be nil (no
// notifications). Metrics are registered on reg (nil: none).
func New(pool *pgxpool.Pool, cfg Config, notifier Notifier, logger *slog.Logger, reg prometheus.Registerer) *Processor {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EventMaxAttempts <= 0 {
		cfg.EventMaxAttempts = DefaultEventMaxAttempts
	}
	if cfg.EventRetryGrace <= 0 {
		cfg.EventRetryGrace = DefaultEventRetryGrace
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	p := &Processor{pool: pool, cfg: cfg, notify: notifier, log: logger.With("component", "alert")}
	p.m = newMetrics(p, reg)
	return p
}

// Policy returns the lifecycle timings.
func (p *Processor) Policy() Policy { return p.cfg.Policy }

// alertCols is the column list scanned by scanAlert.
const alertCols = `id, sensor, site, asset, kind, rule, rule_key, severity, state, opened_at, last_event_at,
	event_count, last_value, peak_score, threshold, model, created_at, updated_at, clear_since, acked_at,
	coalesce(acked_by, ''), resolved_at, coalesce(resolved_by, ''), escalation_level, escalated_at,
	limit_value, limit_eta, trend_per_hour`

func scanAlert(row pgx.Row) (*Alert, error) {
	var a Alert
	var sev int16
	var clear, acked, resolved, escalated, eta *time.Time
	var limit, perHour *float64
	err := row.Scan(&a.ID, &a.Sensor, &a.Site, &a.Asset, &a.Kind, &a.Rule, &a.RuleKey, &sev, &a.State,
		&a.OpenedAt, &a.LastEventAt, &a.Count, &a.LastValue, &a.PeakScore, &a.Threshold, &a.Model,
		&a.CreatedAt, &a.UpdatedAt, &clear, &acked, &a.AckedBy, &resolved, &a.ResolvedBy,
		&a.EscalationLevel, &escalated, &limit, &eta, &perHour)
	if err != nil {
		return nil, err
	}
	a.Severity = wire.Severity(sev)
	a.ClearSince, a.AckedAt, a.ResolvedAt, a.EscalatedAt = deref(clear), deref(acked), deref(resolved), deref(escalated)
	if limit != nil && eta != nil {
		a.Forecast = Forecast{Limit: *limit, ETA: eta.UTC()}
		if perHour != nil {
			a.Forecast.PerHour = *perHour
		}
	}
	for _, t := range []*time.Time{&a.OpenedAt, &a.LastEventAt, &a.CreatedAt, &a.UpdatedAt} {
		*t = t.UTC()
	}
	return &a, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ProcessEvents is the store.EventsHook: it applies the batch's newly
// stored events to alerts inside the batch transaction tx. Events are
// applied in (sensor, rule, time) order, which also fixes the lock order
// between concurrent batches. A temporary database error fails the batch
// (the edge retries it); any other error is logged, the alert changes are
// rolled back to a savepoint, the failed attempt is recorded on the events
// (attempts, last_error) and they stay in the events table with
// processed_at unset, so a bad event can never block readings. The
// sweeper retries them later (Sweep).
func (p *Processor) ProcessEvents(ctx context.Context, tx *pgx.Conn, edgeID string, events []wire.Event) error {
	return p.processEvents(ctx, tx, edgeID, events)
}

func (p *Processor) processEvents(ctx context.Context, tx DBTX, edgeID string, events []wire.Event) error {
	if len(events) == 0 {
		return nil
	}
	var seqs []int64
	for i := range events {
		if events[i].Seq > 0 {
			seqs = append(seqs, int64(events[i].Seq))
		}
	}
	now := p.cfg.Now().UTC()
	err := p.applyEvents(ctx, tx, events, now, func() error {
		if len(seqs) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE events SET processed_at = $3 WHERE edge_id = $1 AND seq = ANY($2)`, edgeID, seqs, now)
		return err
	})
	var rb *rolledBack
	if !errors.As(err, &rb) {
		return err // nil, temporary (the batch is retried) or the transaction is broken
	}
	p.m.eventErrors.Inc()
	p.log.Error("cannot turn events into alerts; events kept unprocessed for the sweeper to retry", "edge", edgeID, "err", err)
	if len(seqs) > 0 {
		if _, rerr := tx.Exec(ctx, `UPDATE events SET attempts = attempts + 1, last_error = $3
			WHERE edge_id = $1 AND seq = ANY($2)`, edgeID, seqs, err.Error()); rerr != nil {
			return fmt.Errorf("cannot record failed attempt on events: %w (after %v)", rerr, err)
		}
	}
	return nil
}

// rolledBack wraps an event error after its alert changes were rolled
// back to the savepoint (the transaction is usable again).
type rolledBack struct{ err error }

func (e *rolledBack) Error() string { return e.err.Error() }
func (e *rolledBack) Unwrap() error { return e.err }

// applyEvents is the one path from events to alerts, used by the ingest
// hook and the sweeper's retries: inside a savepoint it applies events in
// (sensor, rule, time) order and then runs mark (which records them
// processed). On error the savepoint is rolled back (unless the error is
// temporary or the context ended: then the caller's transaction is
// abandoned anyway) and the error returned.
func (p *Processor) applyEvents(ctx context.Context, tx DBTX, events []wire.Event, now time.Time, mark func() error) error {
	if _, err := tx.Exec(ctx, `SAVEPOINT alert_events`); err != nil {
		return fmt.Errorf("cannot take savepoint for alerts: %w", err)
	}
	order := make([]int, len(events))
	keys := make([]string, len(events))
	for i := range events {
		order[i] = i
		_, keys[i] = RuleKey(&events[i])
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ea, eb := &events[a], &events[b]
		return cmp.Or(strings.Compare(ea.Sensor, eb.Sensor), strings.Compare(keys[a], keys[b]), cmp.Compare(ea.Time, eb.Time))
	})
	var err error
	for _, i := range order {
		if err = p.apply(ctx, tx, &events[i], now); err != nil {
			err = fmt.Errorf("event %d of sensor %q (rule %q): %w", i, events[i].Sensor, events[i].Rule, err)
			break
		}
	}
	if err == nil {
		if err = mark(); err != nil {
			err = fmt.Errorf("cannot mark events processed: %w", err)
		}
	}
	if err == nil {
		if _, err = tx.Exec(ctx, `RELEASE SAVEPOINT alert_events`); err == nil {
			return nil
		}
	}
	if store.Temporary(err) || errors.Is(err, context.Canceled) {
		return err
	}
	if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT alert_events`); rerr != nil {
		return fmt.Errorf("cannot roll back alert changes: %w (after %v)", rerr, err)
	}
	return &rolledBack{err}
}

// apply applies one event.
func (p *Processor) apply(ctx context.Context, tx DBTX, ev *wire.Event, now time.Time) error {
	_, key := RuleKey(ev)
	cur, err := lockActive(ctx, tx, ev.Sensor, key)
	if err != nil {
		return err
	}
	next, tr := Apply(cur, ev, now)
	if next == nil {
		return nil
	}
	if tr == Opened || ev.State == wire.EventRaised {
		site, lims, err := sensorInfo(ctx, tx, ev.Sensor)
		if err != nil {
			return err
		}
		if tr == Opened {
			next.Site = site
		}
		if ev.Kind == wire.EventLimit {
			lims = append(lims, ev.Threshold)
		}
		if f, ok, err := forecast(ctx, tx, ev.Sensor, lims); err != nil {
			return err
		} else if ok {
			next.Forecast = f
		}
	}
	if tr == Opened {
		id, err := insertAlert(ctx, tx, next)
		if err != nil {
			return err
		}
		if id == 0 {
			// Another transaction opened it first: update that one.
			if cur, err = lockActive(ctx, tx, ev.Sensor, key); err != nil || cur == nil {
				return fmt.Errorf("alert for %q %s vanished: %w", ev.Sensor, key, err)
			}
			return p.apply(ctx, tx, ev, now)
		}
		next.ID = id
	} else if err := updateAlert(ctx, tx, next); err != nil {
		return err
	}
	return p.record(ctx, tx, next, tr, SystemActor, "", now)
}

// record writes the audit row and queues notifications for tr.
func (p *Processor) record(ctx context.Context, tx DBTX, a *Alert, tr Transition, actor, note string, now time.Time) error {
	if !tr.Audited() {
		return nil
	}
	var eventID int64
	err := tx.QueryRow(ctx, `INSERT INTO alert_events (alert_id, at, transition, actor, note, severity, value, score)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		a.ID, now, string(tr), actor, note, int16(a.Severity), a.LastValue, a.PeakScore).Scan(&eventID)
	if err != nil {
		return fmt.Errorf("cannot record %s of alert %d: %w", tr, a.ID, err)
	}
	p.m.transitions.WithLabelValues(string(tr)).Inc()
	if !tr.Notifies() || p.notify == nil {
		return nil
	}
	n := p.notification(a, tr, eventID, actor, note, now)
	if err := p.notify.Enqueue(ctx, tx, n); err != nil {
		return fmt.Errorf("cannot queue notification of alert %d: %w", a.ID, err)
	}
	return nil
}

func (p *Processor) notification(a *Alert, tr Transition, eventID int64, actor, note string, now time.Time) *Notification {
	n := &Notification{
		Key: "alert-" + strconv.FormatInt(a.ID, 10) + "-" + strconv.FormatInt(eventID, 10), AlertID: a.ID, EventID: eventID,
		Transition: tr, State: a.State, Severity: a.Severity.String(), Sensor: a.Sensor, Site: a.Site, Asset: a.Asset,
		Kind: a.Kind, Rule: a.Rule, Value: a.LastValue, Threshold: a.Threshold, PeakScore: a.PeakScore, Count: a.Count,
		Since: a.OpenedAt, At: now, Actor: actor, Note: note, EscalationLevel: a.EscalationLevel,
		URL: p.cfg.BaseURL + "/api/v1/alerts/" + strconv.FormatInt(a.ID, 10),
	}
	if a.Forecast.Valid() {
		l, eta := a.Forecast.Limit, a.Forecast.ETA
		n.LimitValue, n.LimitETA = &l, &eta
	}
	return n
}

func lockActive(ctx context.Context, tx DBTX, sensor, key string) (*Alert, error) {
	a, err := scanAlert(tx.QueryRow(ctx, `SELECT `+alertCols+` FROM alerts
		WHERE sensor = $1 AND rule_key = $2 AND state <> 'resolved' FOR UPDATE`, sensor, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read active alert: %w", err)
	}
	return a, nil
}

func insertAlert(ctx context.Context, tx DBTX, a *Alert) (int64, error) {
	var id int64
	lv, eta, ph := forecastCols(a.Forecast)
	err := tx.QueryRow(ctx, `INSERT INTO alerts (sensor, site, asset, kind, rule, rule_key, severity, state,
			opened_at, last_event_at, event_count, last_value, peak_score, threshold, model, created_at, updated_at,
			limit_value, limit_eta, trend_per_hour)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
		ON CONFLICT (sensor, rule_key) WHERE state <> 'resolved' DO NOTHING RETURNING id`,
		a.Sensor, a.Site, a.Asset, a.Kind, a.Rule, a.RuleKey, int16(a.Severity), string(a.State),
		a.OpenedAt, a.LastEventAt, a.Count, a.LastValue, a.PeakScore, a.Threshold, a.Model, a.CreatedAt, a.UpdatedAt,
		lv, eta, ph).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot open alert: %w", err)
	}
	return id, nil
}

func forecastCols(f Forecast) (*float64, *time.Time, *float64) {
	if !f.Valid() {
		return nil, nil, nil
	}
	return &f.Limit, &f.ETA, &f.PerHour
}

func updateAlert(ctx context.Context, tx DBTX, a *Alert) error {
	lv, eta, ph := forecastCols(a.Forecast)
	_, err := tx.Exec(ctx, `UPDATE alerts SET rule = $2, severity = $3, state = $4, last_event_at = $5,
			event_count = $6, last_value = $7, peak_score = $8, threshold = $9, model = $10, updated_at = $11,
			clear_since = $12, acked_at = $13, acked_by = $14, resolved_at = $15, resolved_by = $16,
			escalation_level = $17, escalated_at = $18, limit_value = $19, limit_eta = $20, trend_per_hour = $21
		WHERE id = $1`,
		a.ID, a.Rule, int16(a.Severity), string(a.State), a.LastEventAt, a.Count, a.LastValue, a.PeakScore,
		a.Threshold, a.Model, a.UpdatedAt, nullTime(a.ClearSince), nullTime(a.AckedAt), nullText(a.AckedBy),
		nullTime(a.ResolvedAt), nullText(a.ResolvedBy), a.EscalationLevel, nullTime(a.EscalatedAt), lv, eta, ph)
	if err != nil {
		return fmt.Errorf("cannot update alert %d: %w", a.ID, err)
	}
	return nil
}

// sensorInfo returns the sensor's site (from the registry, else from its
// id) and its physical range ends as forecast limits.
func sensorInfo(ctx context.Context, tx DBTX, sensor string) (string, []float64, error) {
	var site string
	var lo, hi *float64
	err := tx.QueryRow(ctx, `SELECT site, range_min, range_max FROM sensors WHERE id = $1`, sensor).Scan(&site, &lo, &hi)
	if errors.Is(err, pgx.ErrNoRows) {
		if sp, perr := store.ParseSensorID(sensor); perr == nil {
			site = sp.Site
		}
		return site, nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("cannot read sensor %q: %w", sensor, err)
	}
	var lims []float64
	for _, v := range []*float64{lo, hi} {
		if v != nil {
			lims = append(lims, *v)
		}
	}
	return site, lims, nil
}

// forecast fits the sensor's last TrendPoints good readings (including
// those of the current batch, written earlier in the transaction).
func forecast(ctx context.Context, tx DBTX, sensor string, limits []float64) (Forecast, bool, error) {
	if len(limits) == 0 {
		return Forecast{}, false, nil
	}
	rows, err := tx.Query(ctx, `SELECT r.time, r.value FROM readings r
		WHERE r.sensor_id = (SELECT num FROM sensors WHERE id = $1) AND r.quality <> $2
		ORDER BY r.time DESC LIMIT $3`, sensor, int16(wire.QualityBad), TrendPoints)
	if err != nil {
		return Forecast{}, false, fmt.Errorf("cannot read recent readings of %q: %w", sensor, err)
	}
	var ts []time.Time
	var vs []float64
	for rows.Next() {
		var t time.Time
		var v float64
		if err := rows.Scan(&t, &v); err != nil {
			rows.Close()
			return Forecast{}, false, err
		}
		if !math.IsNaN(v) {
			ts, vs = append(ts, t), append(vs, v)
		}
	}
	if err := rows.Err(); err != nil {
		return Forecast{}, false, fmt.Errorf("cannot read recent readings of %q: %w", sensor, err)
	}
	f, ok := TimeToLimit(ts, vs, limits)
	return f, ok, nil
}
