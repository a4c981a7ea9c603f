package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Alerts configures the alert lifecycle (collector/internal/alert).
type Alerts struct {
	// AutoResolveAfter: an alert whose condition has been clear this long
	// is resolved (0 disables).
	AutoResolveAfter time.Duration `yaml:"auto_resolve_after"`
	// EscalateAfter: an unacknowledged alert is escalated after this long,
	// and again every EscalateAfter, at most MaxEscalations times (0
	// disables).
	EscalateAfter  time.Duration `yaml:"escalate_after"`
	MaxEscalations int           `yaml:"max_escalations"`
	// SweepInterval is how often due auto-resolves and escalations run,
	// and events that failed alert processing are retried.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// EventMaxAttempts: an event that failed alert processing this many
	// times (live, then by the sweeper) is given up (events.failed_at).
	EventMaxAttempts int `yaml:"event_max_attempts"`
	// EventRetryGrace: the sweeper retries an unprocessed event only once
	// it was received at least this long ago.
	EventRetryGrace time.Duration `yaml:"event_retry_grace"`
	// PublicBaseURL is the collector's URL as people reach it, for links in
	// notifications (e.g. https://collector.example.com).
	PublicBaseURL string `yaml:"public_base_url"`
}

// Notify configures notification channels, routing and the outbox
// workers (collector/internal/notify).
type Notify struct {
	// Workers turns the outbox workers of this process on (default true);
	// notifications are still queued when off.
	Workers bool `yaml:"workers"`
	// PollInterval: how often an idle worker looks for due notifications.
	PollInterval time.Duration `yaml:"poll_interval"`
	// GroupWindow: a notification waits this long so that others queued
	// meanwhile for the same channel go out in the same message.
	GroupWindow time.Duration `yaml:"group_window"`
	// MaxGroup bounds the notifications of one message.
	MaxGroup int `yaml:"max_group"`
	// MaxAttempts: after this many failed sends a notification is marked
	// failed and no longer retried.
	MaxAttempts int `yaml:"max_attempts"`
	// BackoffMin and BackoffMax bound the exponential retry delay.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// SendTimeout bounds one send.
	SendTimeout time.Duration `yaml:"send_timeout"`
	Channels    []Channel     `yaml:"channels"`
	// Routes send matching notifications to channels; every matching route
	// contributes. With no routes, every channel gets everything.
	Routes []Route `yaml:"routes"`
}

// Secret names where a secret comes from: an environment variable or a
// file. The value itself is never in the config file.
type Secret struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// IsSet reports whether a source is named.
func (s Secret) IsSet() bool { return s.Env != "" || s.File != "" }

// Channel is one notification destination.
type Channel struct {
	Name string `yaml:"name"`
	// Type is webhook, slack, email, alertmanager or mqtt.
	Type string `yaml:"type"`
	// RatePerMinute limits messages per minute from each collector process
	// (0: unlimited); Burst is the bucket size.
	RatePerMinute float64 `yaml:"rate_per_minute"`
	Burst         int     `yaml:"burst"`
	// URL: webhook endpoint, or Alertmanager base URL
	// (http://am:9093). Slack's URL is a secret: see Secret.
	URL string `yaml:"url"`
	// Secret: the webhook's HMAC key, Slack's incoming-webhook URL, the
	// SMTP password or the MQTT password.
	Secret Secret `yaml:"secret"`
	// E-mail.
	SMTPHost string   `yaml:"smtp_host"`
	SMTPPort int      `yaml:"smtp_port"`
	Username string   `yaml:"username"`
	From     string   `yaml:"from"`
	To       []string `yaml:"to"`
	// TLS is starttls (default; refuse servers without it), tls (implicit
	// TLS, port 465) or none (only for a relay on localhost).
	TLS string `yaml:"tls"`
	// CAFile holds extra CAs to trust (e-mail, webhook, MQTT).
	CAFile string `yaml:"ca_file"`
	// MQTT: broker URL (tcp://host:1883, ssl://...), topic template with
	// {site}, {asset}, {severity}, {sensor}; QoS 0-2; retained messages.
	Broker   string `yaml:"broker"`
	Topic    string `yaml:"topic"`
	QoS      int    `yaml:"qos"`
	Retain   bool   `yaml:"retain"`
	ClientID string `yaml:"client_id"`
}

// Route matches notifications by site, asset, minimum severity and
// transition (empty lists match all) and names the channels to use.
type Route struct {
	Sites       []string `yaml:"sites"`
	Assets      []string `yaml:"assets"`
	MinSeverity string   `yaml:"min_severity"`
	Transitions []string `yaml:"transitions"`
	Channels    []string `yaml:"channels"`
}

// defaultAlerts and defaultNotify are the alert and notify defaults; see
// alert.DefaultPolicy and notify.DefaultOptions for why.
func defaultAlerts() Alerts {
	return Alerts{AutoResolveAfter: 10 * time.Minute, EscalateAfter: 30 * time.Minute, MaxEscalations: 3,
		SweepInterval: 15 * time.Second, EventMaxAttempts: 5, EventRetryGrace: 30 * time.Second,
		PublicBaseURL: "http://localhost:8080"}
}

func defaultNotify() Notify {
	return Notify{Workers: true, PollInterval: time.Second, GroupWindow: 10 * time.Second, MaxGroup: 20,
		MaxAttempts: 20, BackoffMin: 5 * time.Second, BackoffMax: 10 * time.Minute, SendTimeout: 15 * time.Second}
}

var (
	channelTypes = []string{"webhook", "slack", "email", "alertmanager", "mqtt"}
	severities   = []string{"warning", "minor", "major", "critical"}
	transitions  = []string{"opened", "severity_raised", "acknowledged", "resolved", "auto_resolved", "escalated"}
)

// alertProblems validates the alerts and notify sections.
func (c *Config) alertProblems() []error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	a := c.Alerts
	if a.AutoResolveAfter < 0 {
		bad("alerts.auto_resolve_after", "must not be negative")
	}
	if a.EscalateAfter < 0 {
		bad("alerts.escalate_after", "must not be negative")
	}
	if a.MaxEscalations < 0 {
		bad("alerts.max_escalations", "must not be negative")
	}
	if a.SweepInterval < time.Second {
		bad("alerts.sweep_interval", "must be at least 1s, got %s", a.SweepInterval)
	}
	if a.EventMaxAttempts < 1 {
		bad("alerts.event_max_attempts", "must be at least 1, got %d", a.EventMaxAttempts)
	}
	if a.EventRetryGrace < time.Second {
		bad("alerts.event_retry_grace", "must be at least 1s, got %s", a.EventRetryGrace)
	}
	if u, err := url.Parse(a.PublicBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("alerts.public_base_url", "must be an http(s) URL such as https://collector.example.com")
	}
	n := c.Notify
	for path, d := range map[string]time.Duration{"notify.poll_interval": n.PollInterval, "notify.backoff_min": n.BackoffMin,
		"notify.backoff_max": n.BackoffMax, "notify.send_timeout": n.SendTimeout} {
		if d <= 0 {
			bad(path, "must be positive, got %s", d)
		}
	}
	if n.BackoffMax < n.BackoffMin {
		bad("notify.backoff_max", "must be at least notify.backoff_min")
	}
	if n.GroupWindow < 0 {
		bad("notify.group_window", "must not be negative")
	}
	if n.MaxGroup < 1 {
		bad("notify.max_group", "must be at least 1")
	}
	if n.MaxAttempts < 1 {
		bad("notify.max_attempts", "must be at least 1")
	}
	names := map[string]bool{}
	for i, ch := range n.Channels {
		p := fmt.Sprintf("notify.channels[%d]", i)
		if ch.Name == "" || strings.ContainsAny(ch.Name, " \t\r\n") || len(ch.Name) > 64 {
			bad(p+".name", "required: 1-64 characters without spaces")
		} else if names[ch.Name] {
			bad(p+".name", "%q is used twice", ch.Name)
		}
		names[ch.Name] = true
		if ch.RatePerMinute < 0 {
			bad(p+".rate_per_minute", "must not be negative")
		}
		if ch.RatePerMinute > 0 && ch.Burst < 1 {
			bad(p+".burst", "must be at least 1 when rate_per_minute is set")
		}
		if ch.Secret.Env != "" && ch.Secret.File != "" {
			bad(p+".secret", "set env or file, not both")
		}
		httpURL := func(field, v string) {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(p+"."+field, "must be an http(s) URL")
			}
		}
		switch ch.Type {
		case "webhook":
			httpURL("url", ch.URL)
			if !ch.Secret.IsSet() {
				bad(p+".secret", "required: the HMAC key (env or file)")
			}
		case "slack":
			if !ch.Secret.IsSet() {
				bad(p+".secret", "required: the incoming-webhook URL (env or file); it is a secret")
			}
			if ch.URL != "" {
				bad(p+".url", "put the Slack URL in secret (env or file): it is a credential")
			}
		case "alertmanager":
			httpURL("url", ch.URL)
		case "email":
			if ch.SMTPHost == "" {
				bad(p+".smtp_host", "required")
			}
			if ch.SMTPPort < 0 || ch.SMTPPort > 65535 {
				bad(p+".smtp_port", "must be 0-65535")
			}
			if ch.From == "" {
				bad(p+".from", "required")
			}
			if len(ch.To) == 0 {
				bad(p+".to", "at least one recipient")
			}
			if !slices.Contains([]string{"", "starttls", "tls", "none"}, ch.TLS) {
				bad(p+".tls", "must be starttls, tls or none")
			}
			if ch.Username != "" && !ch.Secret.IsSet() {
				bad(p+".secret", "required with username: the SMTP password (env or file)")
			}
		case "mqtt":
			if u, err := url.Parse(ch.Broker); err != nil || u.Host == "" ||
				!slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}, u.Scheme) {
				bad(p+".broker", "must be a broker URL such as tcp://host:1883")
			}
			if ch.QoS < 0 || ch.QoS > 2 {
				bad(p+".qos", "must be 0, 1 or 2")
			}
		default:
			bad(p+".type", "must be one of %s, got %q", strings.Join(channelTypes, ", "), ch.Type)
		}
	}
	for i, r := range n.Routes {
		p := fmt.Sprintf("notify.routes[%d]", i)
		if len(r.Channels) == 0 {
			bad(p+".channels", "at least one channel")
		}
		for _, name := range r.Channels {
			if !names[name] {
				bad(p+".channels", "no channel named %q", name)
			}
		}
		if r.MinSeverity != "" && !slices.Contains(severities, r.MinSeverity) {
			bad(p+".min_severity", "must be one of %s", strings.Join(severities, ", "))
		}
		for _, t := range r.Transitions {
			if !slices.Contains(transitions, t) {
				bad(p+".transitions", "%q is not one of %s", t, strings.Join(transitions, ", "))
			}
		}
	}
	return errs
}
