package server

// Alerts and notifications wiring (collector/internal/alert and notify):
// the adapter from alert.Processor to api.Alerts, and the construction of
// the processor, the outbox and its workers from the configuration.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/collector/internal/alert"
	"github.com/smartmaint/smartmaint/collector/internal/api"
	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/collector/internal/notify"
	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// alerting is the alert processor, its sweeper and the outbox workers.
type alerting struct {
	proc    *alert.Processor
	sweeper *alert.Sweeper
	workers *notify.Workers // nil when this process runs no workers
	closers []func()
}

// newAlerting builds the alert lifecycle and notifications from cfg.
// Secrets are read through getenv and files now, so a missing one fails
// start-up rather than the first notification.
func newAlerting(pool *pgxpool.Pool, cfg config.Config, getenv func(string) string, logger *slog.Logger, reg prometheus.Registerer) (*alerting, error) {
	host, _ := os.Hostname()
	chans, err := notify.BuildChannels(cfg.Notify.Channels, getenv, host)
	if err != nil {
		return nil, fmt.Errorf("cannot set up notification channels: %w", err)
	}
	names := make([]string, len(chans))
	a := &alerting{}
	for i, c := range chans {
		names[i] = c.Name
		if m, ok := c.Sender.(*notify.MQTTSender); ok {
			a.closers = append(a.closers, m.Close)
		}
	}
	outbox := &notify.Outbox{Router: notify.NewRouter(names, cfg.Notify.Routes)}
	ac := cfg.Alerts
	a.proc = alert.New(pool, alert.Config{
		Policy:           alert.Policy{AutoResolveAfter: ac.AutoResolveAfter, EscalateAfter: ac.EscalateAfter, MaxEscalations: ac.MaxEscalations},
		BaseURL:          ac.PublicBaseURL,
		EventMaxAttempts: ac.EventMaxAttempts,
		EventRetryGrace:  ac.EventRetryGrace,
	}, outbox, logger, reg)
	a.sweeper = &alert.Sweeper{S: a.proc, Interval: ac.SweepInterval, Log: logger}
	m := notify.NewMetrics(reg, pool)
	if cfg.Notify.Workers && len(chans) > 0 {
		n := cfg.Notify
		a.workers = notify.NewWorkers(pool, notify.Options{PollInterval: n.PollInterval, GroupWindow: n.GroupWindow,
			MaxGroup: n.MaxGroup, MaxAttempts: n.MaxAttempts, BackoffMin: n.BackoffMin, BackoffMax: n.BackoffMax,
			SendTimeout: n.SendTimeout}, chans, logger, m)
	}
	return a, nil
}

// run runs the sweeper and the workers until ctx is done.
func (a *alerting) run(ctx context.Context) {
	done := make(chan struct{})
	go func() { a.sweeper.Run(ctx); close(done) }()
	if a.workers != nil {
		a.workers.Run(ctx)
	}
	<-done
}

func (a *alerting) close() {
	for _, c := range a.closers {
		c()
	}
}

// alertsAPI adapts the alert processor to api.Alerts.
type alertsAPI struct{ p *alert.Processor }

func severityOf(s string) wire.Severity {
	for v := wire.SeverityWarning; v <= wire.SeverityCritical; v++ {
		if v.String() == s {
			return v
		}
	}
	return 0
}

func optTime(t interface{ IsZero() bool }) bool { return !t.IsZero() }

func alertView(a *alert.Alert) api.Alert {
	v := api.Alert{ID: a.ID, Sensor: a.Sensor, Site: a.Site, Asset: a.Asset, Kind: a.Kind, Rule: a.Rule,
		Severity: a.Severity.String(), State: string(a.State), OpenedAt: a.OpenedAt, LastEventAt: a.LastEventAt,
		Count: a.Count, LastValue: a.LastValue, PeakScore: a.PeakScore, Threshold: a.Threshold, Model: a.Model,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, AckedBy: a.AckedBy, ResolvedBy: a.ResolvedBy,
		EscalationLevel: a.EscalationLevel}
	if optTime(a.ClearSince) {
		t := a.ClearSince
		v.ClearSince = &t
	}
	if optTime(a.AckedAt) {
		t := a.AckedAt
		v.AckedAt = &t
	}
	if optTime(a.ResolvedAt) {
		t := a.ResolvedAt
		v.ResolvedAt = &t
	}
	if optTime(a.EscalatedAt) {
		t := a.EscalatedAt
		v.EscalatedAt = &t
	}
	if a.Forecast.Valid() {
		v.TimeToLimit = &api.TimeToLimit{Limit: a.Forecast.Limit, ExpectedAt: a.Forecast.ETA, TrendPerHour: a.Forecast.PerHour}
	}
	return v
}

func (s alertsAPI) ListAlerts(ctx context.Context, f api.AlertFilter, p api.Page) ([]api.Alert, string, error) {
	af := alert.Filter{Site: f.Site, Asset: f.Asset, Sensor: f.Sensor, From: f.From, To: f.To}
	for _, st := range f.States {
		af.States = append(af.States, alert.State(st))
	}
	for _, sv := range f.Severities {
		af.Severities = append(af.Severities, severityOf(sv))
	}
	items, next, err := s.p.List(ctx, af, p.Cursor, p.Limit)
	if errors.Is(err, alert.ErrInvalid) {
		return nil, "", fmt.Errorf("%w: %v", api.ErrInvalidQuery, err)
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]api.Alert, len(items))
	for i := range items {
		out[i] = alertView(&items[i])
	}
	return out, next, nil
}

func (s alertsAPI) GetAlert(ctx context.Context, id int64) (api.AlertDetail, error) {
	a, audit, rs, err := s.p.Get(ctx, id)
	if errors.Is(err, alert.ErrNotFound) {
		return api.AlertDetail{}, api.ErrNotFound
	}
	if err != nil {
		return api.AlertDetail{}, err
	}
	d := api.AlertDetail{Alert: alertView(a), Events: make([]api.AlertEvent, len(audit)), RecentReadings: make([]api.Point, len(rs))}
	for i, e := range audit {
		d.Events[i] = api.AlertEvent{ID: e.ID, At: e.At, Transition: string(e.Transition), Actor: e.Actor, Note: e.Note,
			Severity: e.Severity.String(), Value: e.Value, Score: e.Score}
	}
	for i, r := range rs {
		d.RecentReadings[i] = pointView(store.Point{Sensor: a.Sensor, Time: r.Time, Value: r.Value, Count: 1,
			Quality: r.Quality, Flags: wire.Flags(r.Flags), Score: r.Score}, false)
	}
	return d, nil
}

func (s alertsAPI) AlertAction(ctx context.Context, id int64, action, actor, note string) (api.Alert, error) {
	tr := alert.Acknowledged
	if action == api.ActionResolve {
		tr = alert.Resolved
	}
	a, err := s.p.Act(ctx, id, tr, actor, note)
	switch {
	case errors.Is(err, alert.ErrNotFound):
		return api.Alert{}, api.ErrNotFound
	case errors.Is(err, alert.ErrState):
		return api.Alert{}, fmt.Errorf("%w: %v", api.ErrConflict, err)
	case errors.Is(err, alert.ErrInvalid):
		return api.Alert{}, fmt.Errorf("%w: %v", api.ErrInvalidArgument, err)
	case err != nil:
		return api.Alert{}, err
	}
	return alertView(a), nil
}
