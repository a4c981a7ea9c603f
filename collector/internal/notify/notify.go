// Package notify delivers alert notifications through a transactional
// outbox: the alert package queues one notification_outbox row per
// (transition, routed channel) in the transaction that made the
// transition (Outbox.Enqueue), and workers (Workers.Run) claim due rows
// with FOR UPDATE SKIP LOCKED, send them, and mark them sent in the same
// transaction, retrying failures with exponential backoff.
//
// Channels: signed webhook (HMAC-SHA256), Slack incoming webhook, e-mail
// over SMTP (STARTTLS and auth), Prometheus Alertmanager v2 API and MQTT
// publish. Routing rules choose channels by site, asset, severity and
// transition; notifications queued within a group window go out as one
// message; each channel has a rate limit. Delivery is at least once per
// channel with an idempotency key in every message: see README.md.
package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/smartmaint/smartmaint/collector/internal/alert"
	"github.com/smartmaint/smartmaint/collector/internal/config"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Router decides which channels get a notification. It is immutable and
// safe for concurrent use.
type Router struct {
	channels []string
	routes   []route
}

type route struct {
	sites, assets, transitions []string
	minSeverity                wire.Severity
	channels                   []string
}

func parseSeverity(s string) wire.Severity {
	for v := wire.SeverityWarning; v <= wire.SeverityCritical; v++ {
		if v.String() == s {
			return v
		}
	}
	return 0
}

// NewRouter builds a router over the named channels. With no routes every
// channel gets every notification.
func NewRouter(channels []string, routes []config.Route) *Router {
	r := &Router{channels: slices.Clone(channels)}
	for _, c := range routes {
		r.routes = append(r.routes, route{sites: c.Sites, assets: c.Assets, transitions: c.Transitions,
			minSeverity: parseSeverity(c.MinSeverity), channels: c.Channels})
	}
	return r
}

// Channels returns the channels for n, each once, in configuration order.
func (r *Router) Channels(n *alert.Notification) []string {
	if len(r.routes) == 0 {
		return r.channels
	}
	sev := parseSeverity(n.Severity)
	want := map[string]bool{}
	for _, rt := range r.routes {
		if len(rt.sites) > 0 && !slices.Contains(rt.sites, n.Site) ||
			len(rt.assets) > 0 && !slices.Contains(rt.assets, n.Asset) ||
			len(rt.transitions) > 0 && !slices.Contains(rt.transitions, string(n.Transition)) ||
			sev < rt.minSeverity {
			continue
		}
		for _, c := range rt.channels {
			want[c] = true
		}
	}
	var out []string
	for _, c := range r.channels {
		if want[c] {
			out = append(out, c)
		}
	}
	return out
}

// Outbox queues notifications; it implements alert.Notifier.
type Outbox struct {
	Router *Router
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Enqueue writes one outbox row per routed channel in tx. The row's
// payload is n as JSON; (event id, channel) is unique, so a transition is
// never queued twice for a channel.
func (o *Outbox) Enqueue(ctx context.Context, tx alert.DBTX, n *alert.Notification) error {
	chans := o.Router.Channels(n)
	if len(chans) == 0 {
		return nil
	}
	payload, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode notification %s: %w", n.Key, err)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now().UTC()
	_, err = tx.Exec(ctx, `INSERT INTO notification_outbox (alert_id, alert_event_id, channel, transition, payload,
			created_at, next_attempt_at)
		SELECT $1, $2, c, $3, $4, $5, $5 FROM unnest($6::text[]) AS c
		ON CONFLICT (alert_event_id, channel) DO NOTHING`,
		n.AlertID, n.EventID, string(n.Transition), payload, t, chans)
	if err != nil {
		return fmt.Errorf("cannot queue notification %s: %w", n.Key, err)
	}
	return nil
}
