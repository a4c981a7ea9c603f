package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const testDB = "postgres://postgres@127.0.0.1:5432/x"

func TestLoadGood(t *testing.T) {
	full := Config{
		Version: 1, Listen: "127.0.0.1:8443", ShutdownTimeout: 20 * time.Second,
		Log: Log{Level: "debug", Format: "text"},
		Database: Database{URL: "postgres://collector@db.example:5432/smartmaint?sslmode=verify-full", Timescale: "require",
			Retention: 2160 * time.Hour, MigrateOnStart: true, MaxConns: 20, PartitionCheck: 30 * time.Minute},
		TLS:     TLS{CertFile: "/etc/sm-collector/tls.crt", KeyFile: "/etc/sm-collector/tls.key", ClientCAFile: "/etc/sm-collector/edges-ca.crt", ClientAuth: "optional"},
		Metrics: Metrics{Listen: "127.0.0.1:9464"},
		Limits: Limits{IngestBodyBytes: 4 << 20, IngestDecodedBytes: 32 << 20, StatusBodyBytes: 32 << 10,
			PageDefault: 50, PageMax: 500, MaxBuckets: 5000, MaxLatestSensors: 100},
		RateLimits: RateLimits{Edge: Rate{10, 20}, APIKey: Rate{5, 10}},
		Ingest: Ingest{FutureTolerance: 2 * time.Minute, AutoRegister: "off", MaxInFlight: 8, MaxQueue: 32,
			QueueTimeout: time.Second, WriteTimeout: 20 * time.Second, RetryAfter: 10 * time.Second, SensorCacheTTL: time.Minute},
		Alerts: Alerts{AutoResolveAfter: 5 * time.Minute, EscalateAfter: 15 * time.Minute, MaxEscalations: 2,
			SweepInterval: 10 * time.Second, EventMaxAttempts: 7, EventRetryGrace: 45 * time.Second,
			PublicBaseURL: "https://collector.example.com"},
		Notify: Notify{Workers: true, PollInterval: 2 * time.Second, GroupWindow: 30 * time.Second, MaxGroup: 10,
			MaxAttempts: 12, BackoffMin: 2 * time.Second, BackoffMax: 5 * time.Minute, SendTimeout: 10 * time.Second,
			Channels: []Channel{
				{Name: "ops-hook", Type: "webhook", URL: "https://hooks.example.com/sm", Secret: Secret{Env: "SM_WEBHOOK_SECRET"}, RatePerMinute: 60, Burst: 10},
				{Name: "slack", Type: "slack", Secret: Secret{File: "/etc/sm-collector/slack-url"}},
				{Name: "mail", Type: "email", SMTPHost: "smtp.example.com", SMTPPort: 587, Username: "alerts@example.com",
					Secret: Secret{File: "/etc/sm-collector/smtp-password"}, From: "alerts@example.com", To: []string{"oncall@example.com"}, TLS: "starttls"},
				{Name: "am", Type: "alertmanager", URL: "http://alertmanager:9093"},
				{Name: "andon", Type: "mqtt", Broker: "tcp://broker:1883", Topic: "andon/{site}/{asset}", QoS: 1, Retain: true},
			},
			Routes: []Route{
				{MinSeverity: "major", Channels: []string{"ops-hook", "slack", "mail", "am"}},
				{Sites: []string{"plant1"}, Transitions: []string{"opened", "resolved", "auto_resolved"}, Channels: []string{"andon"}},
			}},
	}
	minimal := Default()
	minimal.Limits.PageMax = 2000
	minimal.Database.URL = testDB
	withEnv := minimal
	withEnv.Listen = ":9999"
	withEnv.Database.MigrateOnStart = true
	withEnv.TLS.CertFile, withEnv.TLS.KeyFile = "/c", "/k"
	withEnv.Database.Retention = 48 * time.Hour

	tests := []struct {
		name, file string
		env        map[string]string
		want       Config
	}{
		{"full", "full.good.yml", nil, full},
		{"minimal keeps defaults", "minimal.good.yml", map[string]string{"DATABASE_URL": testDB}, minimal},
		{"environment overrides", "minimal.good.yml", map[string]string{
			"DATABASE_URL": testDB, "SM_COLLECTOR_LISTEN": ":9999", "SM_COLLECTOR_DATABASE_MIGRATE_ON_START": "true",
			"SM_COLLECTOR_TLS_CERT_FILE": "/c", "SM_COLLECTOR_TLS_KEY_FILE": "/k", "SM_COLLECTOR_DATABASE_RETENTION": "48h",
		}, withEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(filepath.Join("testdata", tt.file), env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
	// No file at all: defaults plus environment.
	got, err := Load("", env(map[string]string{"DATABASE_URL": testDB}))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Database.URL = testDB
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("no file (-want +got):\n%s", diff)
	}
}

func TestLoadBad(t *testing.T) {
	tests := []struct {
		name, file string
		env        map[string]string
		want       []string // every line of the error, in order
	}{
		{"every problem at once with lines", "problems.bad.yml", nil, []string{
			`testdata/problems.bad.yml:7: database.retention: must be at least 1h, got 10m0s`,
			`testdata/problems.bad.yml:6: database.timescale: must be one of auto, require, off, got "maybe"`,
			`testdata/problems.bad.yml:5: database.url: required (set DATABASE_URL)`,
			`testdata/problems.bad.yml:12: limits.page_default: must not exceed limits.page_max (1000)`,
			`testdata/problems.bad.yml:2: listen: not a host:port address: address nope: missing port in address`,
			`testdata/problems.bad.yml:4: log.level: must be one of debug, info, warn, error, got "loud"`,
			`testdata/problems.bad.yml:14: rate_limits.edge.burst: must be at least 1 when per_second is set`,
			`testdata/problems.bad.yml:8: tls.client_ca_file: required when tls.client_auth is require`,
			`testdata/problems.bad.yml:8: tls.key_file: required when tls.cert_file is set`,
		}},
		{"alert and notify problems", "notify.bad.yml", map[string]string{"DATABASE_URL": testDB}, []string{
			"testdata/notify.bad.yml:4: alerts.public_base_url: must be an http(s) URL such as https://collector.example.com",
			"testdata/notify.bad.yml:3: alerts.sweep_interval: must be at least 1s, got 10ms",
			"testdata/notify.bad.yml:8: notify.backoff_max: must be at least notify.backoff_min",
			"testdata/notify.bad.yml:10: notify.channels[0].secret: required: the HMAC key (env or file)",
			"testdata/notify.bad.yml:10: notify.channels[0].url: must be an http(s) URL",
			`testdata/notify.bad.yml:11: notify.channels[1].name: "hook" is used twice`,
			"testdata/notify.bad.yml:11: notify.channels[1].secret: required: the incoming-webhook URL (env or file); it is a secret",
			"testdata/notify.bad.yml:11: notify.channels[1].url: put the Slack URL in secret (env or file): it is a credential",
			"testdata/notify.bad.yml:12: notify.channels[2].from: required",
			"testdata/notify.bad.yml:12: notify.channels[2].secret: required with username: the SMTP password (env or file)",
			"testdata/notify.bad.yml:12: notify.channels[2].smtp_host: required",
			"testdata/notify.bad.yml:12: notify.channels[2].tls: must be starttls, tls or none",
			"testdata/notify.bad.yml:12: notify.channels[2].to: at least one recipient",
			"testdata/notify.bad.yml:13: notify.channels[3].broker: must be a broker URL such as tcp://host:1883",
			"testdata/notify.bad.yml:13: notify.channels[3].qos: must be 0, 1 or 2",
			"testdata/notify.bad.yml:13: notify.channels[3].secret: set env or file, not both",
			`testdata/notify.bad.yml:14: notify.channels[4].type: must be one of webhook, slack, email, alertmanager, mqtt, got "sms"`,
			"testdata/notify.bad.yml:6: notify.max_group: must be at least 1",
			`testdata/notify.bad.yml:16: notify.routes[0].channels: no channel named "nowhere"`,
			"testdata/notify.bad.yml:16: notify.routes[0].min_severity: must be one of warning, minor, major, critical",
			`testdata/notify.bad.yml:16: notify.routes[0].transitions: "closed" is not one of opened, severity_raised, acknowledged, resolved, auto_resolved, escalated`,
			"testdata/notify.bad.yml:17: notify.routes[1].channels: at least one channel",
		}},
		{"unknown keys and bad types", "unknown.bad.yml", nil, []string{
			`testdata/unknown.bad.yml:3: field databse not found in type config.Config`,
			`testdata/unknown.bad.yml:6: cannot unmarshal !!str ` + "`lots`" + ` into int`,
		}},
		{"bad environment", "minimal.good.yml", map[string]string{"DATABASE_URL": testDB,
			"SM_COLLECTOR_DATABASE_RETENTION": "a week", "SM_COLLECTOR_DATABASE_MIGRATE_ON_START": "yes please"}, []string{
			`environment SM_COLLECTOR_DATABASE_RETENTION: not a duration such as 30s or 1h`,
			`environment SM_COLLECTOR_DATABASE_MIGRATE_ON_START: not true or false`,
		}},
		{"bad database url keeps the password out", "minimal.good.yml", map[string]string{"DATABASE_URL": "mysql://u:hunter2@h/db"}, []string{
			`database.url: scheme must be postgres or postgresql, got "mysql"`,
		}},
		{"missing file", "nope.yml", nil, []string{`cannot read config: open testdata/nope.yml: no such file or directory`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tt.file), env(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "SECRET") {
				t.Error("password in error")
			}
		})
	}
}

var parseSeeds = []string{
	"", "version: 1\n", "- a\n- b\n", "version: 1\n---\nversion: 1\n", "version: [1]\n",
	"listen: {a: b}\n", "version: 1\nlimits: {page_max: -1}\n", "shutdown_timeout: forever\n",
}

func TestParseShapes(t *testing.T) {
	for _, s := range []string{"", "- a\n- b\n", "version: 1\n---\nversion: 1\n", "version: [1]\n", "listen: {a: b}\n"} {
		if _, _, err := Parse("c.yml", []byte(s)); err == nil || !strings.HasPrefix(err.Error(), "c.yml") {
			t.Errorf("Parse(%q): %v, want an error naming the file", s, err)
		}
	}
}

// FuzzLoad: any file either loads into a valid config or fails with an
// error naming the file; it never panics.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"full.good.yml", "minimal.good.yml", "problems.bad.yml", "unknown.bad.yml", "notify.bad.yml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := LoadBytes("c.yml", data, env(map[string]string{"DATABASE_URL": testDB}))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "c.yml") && !strings.Contains(err.Error(), "\nc.yml") && !strings.HasPrefix(err.Error(), "environment") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load returned a config that does not validate: %v", err)
		}
	})
}
