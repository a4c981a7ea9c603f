package forward

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartmaint/smartmaint/edge/internal/buffer"
	"github.com/smartmaint/smartmaint/shared/wire"
)

const testEdge, testToken = "edge-1", "s3cret-token"

func openQueue(t testing.TB) *buffer.Queue {
	t.Helper()
	q, err := buffer.Open(t.Context(), filepath.Join(t.TempDir(), buffer.FileName), buffer.Default(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func testCfg(url string) Config {
	c := Default()
	c.URL = url
	c.BatchSize = 500
	c.BatchDelay = 0
	c.StatusInterval = 0
	c.Backoff.Initial = 5 * time.Millisecond
	c.Backoff.Max = 50 * time.Millisecond
	return c
}

func readings(sensor string, from, n int) []wire.Reading {
	rs := make([]wire.Reading, n)
	for i := range rs {
		rs[i] = wire.Reading{Sensor: sensor, Time: int64(from + i), Value: float64(i)}
	}
	return rs
}

// start runs a forwarder until the test ends and returns it and a stop
// function that cancels it and waits for Run to return.
func start(t *testing.T, cfg Config, q Queue, opts Options) (*Forwarder, func()) {
	t.Helper()
	if opts.EdgeID == "" {
		opts.EdgeID = testEdge
	}
	if opts.Token == "" {
		opts.Token = testToken
	}
	f, err := New(cfg, q, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return f, stop
}

func TestDeliversEverythingOnceEventsFirst(t *testing.T) {
	rcv := newReceiver(t, testEdge, testToken)
	q := openQueue(t)
	ctx := t.Context()
	for i := 0; i < 5000; i += 100 {
		if err := q.Write(ctx, readings("s", i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	ev := wire.Event{Sensor: "s", Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityCritical, Rule: "HH", Time: 4999}
	if err := q.WriteEvents(ctx, []wire.Event{ev}); err != nil {
		t.Fatal(err)
	}
	_, stop := start(t, testCfg(rcv.srv.URL), q, Options{})
	waitFor(t, "all readings", func() bool { return rcv.count() == 5000 && q.Stats().Records == 0 })
	stop()
	rcv.get(func(r *receiver) {
		if r.dups != 0 || len(r.events) != 1 {
			t.Errorf("duplicates %d, events %d; want 0, 1", r.dups, len(r.events))
		}
		if r.events[0].Seq == 0 || r.events[0].Rule != "HH" {
			t.Errorf("event arrived as %+v", r.events[0])
		}
	})
}

// TestReceiverDownThenUp: everything buffered during an outage arrives,
// and readings written after recovery arrive before the backlog is done.
func TestReceiverDownThenUp(t *testing.T) {
	rcv := newReceiver(t, testEdge, testToken)
	rcv.set(func(r *receiver) {
		r.hook = func(*wire.Batch) (int, http.Header, string) {
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"0"}}, "database restarting"
		}
	})
	q := openQueue(t)
	ctx := t.Context()
	_, _ = start(t, testCfg(rcv.srv.URL), q, Options{})
	const backlog, live = 20000, 200
	for i := 0; i < backlog; i += 500 {
		if err := q.Write(ctx, readings("backlog", i, 500)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "failed attempts", func() (ok bool) { rcv.get(func(r *receiver) { ok = r.attempts >= 3 }); return })
	rcv.set(func(r *receiver) { r.hook, r.delay = nil, 3*time.Millisecond })
	waitFor(t, "first accepted batch", func() bool { return rcv.count() > 0 })
	for i := 0; i < live; i += 10 {
		if err := q.Write(ctx, readings("live", i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "everything", func() bool { return rcv.count() == backlog+live })
	rcv.get(func(r *receiver) {
		if r.dups != 0 {
			t.Errorf("%d duplicates", r.dups)
		}
		lastLive, lastBacklog := -1, -1
		for i, rd := range r.arrivals {
			if rd.Sensor == "live" {
				lastLive = i
			} else {
				lastBacklog = i
			}
		}
		if lastLive > lastBacklog {
			t.Errorf("the last live reading arrived at position %d, after the backlog finished at %d", lastLive, lastBacklog)
		}
		t.Logf("live readings all arrived by position %d of %d; backlog finished at %d", lastLive, len(r.arrivals), lastBacklog)
	})
}

func TestUnauthorizedKeepsDataAndRaisesAlarm(t *testing.T) {
	rcv := newReceiver(t, testEdge, "another-token")
	reg := prometheus.NewRegistry()
	q := openQueue(t)
	if err := q.Write(t.Context(), readings("s", 0, 100)); err != nil {
		t.Fatal(err)
	}
	logs := &lockedWriter{}
	f, _ := start(t, testCfg(rcv.srv.URL), q, Options{Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	waitFor(t, "alarm", func() bool { return len(f.State().Alarms) > 0 })
	if got := f.State().Alarms; len(got) != 1 || got[0] != AlarmUnauthorized {
		t.Errorf("alarms %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "smartmaint_edge_uplink_unauthorized"); err != nil || n != 1 {
		t.Errorf("metric: %d %v", n, err)
	}
	if s := q.Stats(); s.Records != 100 {
		t.Errorf("queue holds %d records after 401, want all 100", s.Records)
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("the token appears in the log")
	}
	if !strings.Contains(logs.String(), AlarmUnauthorized) {
		t.Errorf("no alarm in the log:\n%s", logs.String())
	}
	rcv.set(func(r *receiver) { r.token = testToken })
	waitFor(t, "delivery after the credential was fixed", func() bool { return rcv.count() == 100 })
	waitFor(t, "alarm cleared", func() bool { return len(f.State().Alarms) == 0 && f.State().Up })
}

func TestUndecodableBatchIsDeadLettered(t *testing.T) {
	rcv := newReceiver(t, testEdge, testToken)
	refused := 0
	rcv.set(func(r *receiver) {
		r.hook = func(b *wire.Batch) (int, http.Header, string) {
			if refused == 0 && len(b.Readings) > 0 {
				refused = len(b.Readings)
				return http.StatusBadRequest, nil, "undecodable batch"
			}
			return 0, nil, ""
		}
	})
	q := openQueue(t)
	if err := q.Write(t.Context(), readings("s", 0, 700)); err != nil {
		t.Fatal(err)
	}
	_, stop := start(t, testCfg(rcv.srv.URL), q, Options{})
	waitFor(t, "the rest and the gap", func() (ok bool) {
		rcv.get(func(r *receiver) { ok = len(r.gaps) == 1 && len(r.arrivals) == 700-refused })
		return ok
	})
	stop()
	rcv.get(func(r *receiver) {
		g := r.gaps[0]
		if g.Reason != wire.GapRejected || g.Count != uint64(refused) || g.Sensor != "s" {
			t.Errorf("gap %+v, want %s of the %d refused readings of s", g, wire.GapRejected, refused)
		}
	})
	if s := q.Stats(); s.DeadLetters != 1 || s.Records != 0 {
		t.Errorf("dead letters %d, records %d; want 1, 0", s.DeadLetters, s.Records)
	}
}

func TestRejectedItemsAreDropped(t *testing.T) {
	rcv := newReceiver(t, testEdge, testToken)
	rcv.set(func(r *receiver) { r.reject = true })
	reg := prometheus.NewRegistry()
	q := openQueue(t)
	if err := q.Write(t.Context(), readings("s", 0, 10)); err != nil {
		t.Fatal(err)
	}
	_, stop := start(t, testCfg(rcv.srv.URL), q, Options{Registerer: reg})
	waitFor(t, "queue empty", func() bool { return q.Stats().Records == 0 })
	if got := testutil.ToFloat64(mustVec(t, reg, "smartmaint_edge_forward_records_total", "rejected")); got != 10 {
		t.Errorf("rejected records metric %v, want 10", got)
	}
	stop()
}

func TestClockOffsetAndStatus(t *testing.T) {
	rcv := newReceiver(t, testEdge, testToken)
	rcv.set(func(r *receiver) { r.offset = 5 * time.Second })
	q := openQueue(t)
	if err := q.Write(t.Context(), readings("s", 0, 10)); err != nil {
		t.Fatal(err)
	}
	cfg := testCfg(rcv.srv.URL)
	cfg.StatusInterval = time.Second
	f, stop := start(t, cfg, q, Options{Version: "v9", Status: func(s *wire.Status) { s.Broker = "connected" }})
	waitFor(t, "delivery", func() bool { return rcv.count() == 10 })
	st := f.State()
	if !st.ClockOffsetKnown || st.ClockOffset < 4*time.Second || st.ClockOffset > 6*time.Second {
		t.Errorf("clock offset %s (known %v), want about 5s", st.ClockOffset, st.ClockOffsetKnown)
	}
	waitFor(t, "status reports", func() (ok bool) { rcv.get(func(r *receiver) { ok = len(r.statuses) >= 2 }); return })
	stop()
	rcv.get(func(r *receiver) {
		s := r.statuses[len(r.statuses)-1]
		if s.EdgeID != testEdge || s.Version != "v9" || s.Broker != "connected" || s.ClockOffsetMs < 4000 || s.RunwayHours <= 0 {
			t.Errorf("status %+v", s)
		}
	})
}

func TestStopMidDrainKeepsBatch(t *testing.T) {
	rcv := newReceiver(t, testEdge, testToken)
	rcv.set(func(r *receiver) { r.delay = time.Hour })
	q := openQueue(t)
	if err := q.Write(t.Context(), readings("s", 0, 50)); err != nil {
		t.Fatal(err)
	}
	_, stop := start(t, testCfg(rcv.srv.URL), q, Options{})
	waitFor(t, "in flight", func() bool { return q.Stats().InFlight == 50 })
	stop()
	if s := q.Stats(); s.Records != 50 || s.InFlight != 0 {
		t.Errorf("after stop: records %d in flight %d; want 50, 0", s.Records, s.InFlight)
	}
}

func TestValidate(t *testing.T) {
	c := Config{URL: "ftp://x", BatchSize: 0, Timeout: 0, TLS: TLSConfig{CertFile: "a"}}
	err := c.Validate()
	for _, field := range []string{"collector.url", "collector.batch_size", "collector.timeout", "collector.tls",
		"collector.backoff.initial", "collector.backoff.max_retry_after"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v, want a problem with %s", err, field)
		}
	}
	c = Default()
	c.URL = "https://user:pw@collector"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "pw") {
		t.Errorf("credentials in the URL: %v", err)
	}
	c.URL = "https://collector.example.com"
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestLoadToken(t *testing.T) {
	c := Default()
	env := func(v string) func(string) string { return func(string) string { return v } }
	if tok, err := LoadToken(c, env(" t1\n")); err != nil || tok != "t1" {
		t.Errorf("from env: %q %v", tok, err)
	}
	if _, err := LoadToken(c, env("")); err == nil || !strings.Contains(err.Error(), TokenEnv) {
		t.Errorf("missing token: %v", err)
	}
	c.TokenFile = filepath.Join(t.TempDir(), "token")
	if _, err := LoadToken(c, env("t1")); err == nil {
		t.Error("missing token file: no error")
	}
}

func mustVec(t *testing.T, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(m.GetCounter().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return nil
}

// TestBudgetExceededDuringOutage: a long outage overflows a small queue;
// after recovery the collector has every event, and the readings it got
// plus the gap records' counts equal exactly what was written.
func TestBudgetExceededDuringOutage(t *testing.T) {
	rcv := newReceiver(t, testEdge, testToken)
	rcv.set(func(r *receiver) {
		r.hook = func(*wire.Batch) (int, http.Header, string) { return http.StatusServiceUnavailable, nil, "down" }
	})
	bc := buffer.Default()
	bc.MaxBytes = 256 << 10
	q, err := buffer.Open(t.Context(), filepath.Join(t.TempDir(), buffer.FileName), bc, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	_, stop := start(t, testCfg(rcv.srv.URL), q, Options{})
	const n = 40000
	events := 0
	for i := 0; i < n; i += 200 {
		if err := q.Write(t.Context(), readings(fmt.Sprint("s", i%3), i, 200)); err != nil {
			t.Fatal(err)
		}
		if i%4000 == 0 {
			if err := q.WriteEvents(t.Context(), []wire.Event{{Sensor: "s0", Kind: wire.EventAnomaly, State: wire.EventRaised, Severity: wire.SeverityMajor, Time: int64(i)}}); err != nil {
				t.Fatal(err)
			}
			events++
		}
	}
	if q.Stats().Drops[wire.GapBudget] == 0 {
		t.Fatal("the outage did not exceed the budget")
	}
	rcv.set(func(r *receiver) { r.hook = nil })
	waitFor(t, "the queue to drain", func() bool { return q.Stats().Records == 0 && q.Stats().InFlight == 0 })
	stop()
	rcv.get(func(r *receiver) {
		var gapped uint64
		for _, g := range r.gaps {
			if g.Reason != wire.GapBudget {
				t.Errorf("gap %+v", g)
			}
			gapped += g.Count
		}
		if got := uint64(len(r.arrivals)) + gapped; got != n || r.dups != 0 {
			t.Errorf("stored %d + gap-accounted %d = %d (duplicates %d), want exactly %d", len(r.arrivals), gapped, got, r.dups, n)
		}
		if len(r.events) != events {
			t.Errorf("events %d, want all %d", len(r.events), events)
		}
		t.Logf("written %d: stored %d, gap-accounted %d in %d gap records; events %d/%d", n, len(r.arrivals), gapped, len(r.gaps), len(r.events), events)
	})
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "-1", "Thu, 26 Nov 2026 15:00:30 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, h string) {
		if d := retryAfter(h, now); d < 0 {
			t.Errorf("retryAfter(%q) = %s", h, d)
		}
	})
}
