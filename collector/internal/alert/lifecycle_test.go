package alert

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smartmaint/smartmaint/shared/wire"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func limitEvent(st wire.EventState, rule string, sev wire.Severity, at time.Time, v float64) wire.Event {
	return wire.Event{Sensor: "p/l/pump1/temp", Asset: "pump1", Kind: wire.EventLimit, State: st, Severity: sev,
		Rule: rule, Time: at.UnixNano(), Value: v, Score: 0.75, Threshold: 75}
}

func TestRuleKey(t *testing.T) {
	for _, c := range []struct {
		kind wire.EventKind
		rule string
		want string
	}{
		{wire.EventLimit, "H", "limit:high"}, {wire.EventLimit, "HH", "limit:high"},
		{wire.EventLimit, "L", "limit:low"}, {wire.EventLimit, "LL", "limit:low"},
		{wire.EventLimit, "ROC", "limit:ROC"}, {wire.EventAnomaly, "mad", "anomaly:mad"},
	} {
		if _, got := RuleKey(&wire.Event{Kind: c.kind, Rule: c.rule}); got != c.want {
			t.Errorf("RuleKey(%d, %q) = %q, want %q", c.kind, c.rule, got, c.want)
		}
	}
}

// TestApplySequences runs event sequences through Apply and checks the
// transitions and the final alert.
func TestApplySequences(t *testing.T) {
	type step struct {
		ev   wire.Event
		want Transition
	}
	raise := func(sec int, rule string, sev wire.Severity) wire.Event {
		return limitEvent(wire.EventRaised, rule, sev, t0.Add(time.Duration(sec)*time.Second), float64(80+sec))
	}
	clear := func(sec int) wire.Event {
		return limitEvent(wire.EventCleared, "H", wire.SeverityMajor, t0.Add(time.Duration(sec)*time.Second), 70)
	}
	cases := []struct {
		name  string
		steps []step
		count int
		sev   wire.Severity
		clear bool
	}{
		{"clear without alert does nothing", []step{{clear(0), None}}, 0, 0, false},
		{"raise opens", []step{{raise(0, "H", wire.SeverityMajor), Opened}}, 1, wire.SeverityMajor, false},
		{"repeat raise updates quietly", []step{{raise(0, "H", wire.SeverityMajor), Opened}, {raise(1, "H", wire.SeverityMajor), Updated}}, 2, wire.SeverityMajor, false},
		{"oscillation is one alert", []step{
			{raise(0, "H", wire.SeverityMajor), Opened}, {clear(1), Cleared}, {raise(2, "H", wire.SeverityMajor), Recurred},
			{clear(3), Cleared}, {raise(4, "H", wire.SeverityMajor), Recurred}, {clear(5), Cleared}, {clear(6), Updated},
		}, 3, wire.SeverityMajor, true},
		{"H to HH raises severity", []step{
			{raise(0, "H", wire.SeverityMajor), Opened}, {clear(1), Cleared}, {raise(1, "HH", wire.SeverityCritical), SeverityRaised},
		}, 2, wire.SeverityCritical, false},
		{"HH back to H keeps critical", []step{
			{raise(0, "HH", wire.SeverityCritical), Opened}, {raise(1, "H", wire.SeverityMajor), Updated},
		}, 2, wire.SeverityCritical, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cur *Alert
			now := t0.Add(time.Hour)
			for i, s := range c.steps {
				next, tr := Apply(cur, &s.ev, now)
				if tr != s.want {
					t.Fatalf("step %d: transition %q, want %q", i, tr, s.want)
				}
				if next != nil {
					cur = next
				}
			}
			if c.count == 0 {
				if cur != nil {
					t.Fatalf("alert %+v, want none", cur)
				}
				return
			}
			if cur.Count != c.count || cur.Severity != c.sev || cur.ClearSince.IsZero() != !c.clear || cur.State != StateOpen {
				t.Errorf("final alert: count %d sev %v clear %v state %s; want count %d sev %v clear %v open",
					cur.Count, cur.Severity, cur.ClearSince, cur.State, c.count, c.sev, c.clear)
			}
		})
	}
}

func TestEventTimeNeverAfterNow(t *testing.T) {
	ev := limitEvent(wire.EventRaised, "H", wire.SeverityMajor, t0.Add(time.Hour), 80)
	a, _ := Apply(nil, &ev, t0)
	ev.State = wire.EventCleared
	a, _ = Apply(a, &ev, t0)
	if !a.OpenedAt.Equal(t0) || !a.ClearSince.Equal(t0) {
		t.Errorf("an edge clock ahead moved times past now: opened %s clear %s", a.OpenedAt, a.ClearSince)
	}
}

func TestDue(t *testing.T) {
	p := Policy{AutoResolveAfter: 10 * time.Minute, EscalateAfter: 30 * time.Minute, MaxEscalations: 2}
	open := Alert{State: StateOpen, CreatedAt: t0}
	cleared := open
	cleared.ClearSince = t0.Add(5 * time.Minute)
	acked := open
	acked.State = StateAcknowledged
	escalated2 := open
	escalated2.EscalationLevel, escalated2.EscalatedAt = 2, t0.Add(time.Hour)
	resolved := cleared
	resolved.State = StateResolved
	for _, c := range []struct {
		name string
		a    Alert
		at   time.Duration
		want Transition
		next time.Duration
	}{
		{"fresh", open, 29 * time.Minute, None, 30 * time.Minute},
		{"unacked escalates", open, 30 * time.Minute, Escalated, 30 * time.Minute},
		{"acked never escalates", acked, 10 * time.Hour, None, 0},
		{"max escalations", escalated2, 10 * time.Hour, None, 0},
		{"clear not long enough", cleared, 14 * time.Minute, None, 15 * time.Minute},
		{"clear long enough", cleared, 15 * time.Minute, AutoResolved, 15 * time.Minute},
		{"resolved", resolved, 10 * time.Hour, None, 0},
	} {
		if got := p.Due(&c.a, t0.Add(c.at)); got != c.want {
			t.Errorf("%s: Due = %q, want %q", c.name, got, c.want)
		}
		var wantNext time.Time
		if c.next > 0 {
			wantNext = t0.Add(c.next)
		}
		if got := p.NextDue(&c.a); !got.Equal(wantNext) {
			t.Errorf("%s: NextDue = %s, want %s", c.name, got, wantNext)
		}
	}
}

func TestAct(t *testing.T) {
	a := &Alert{State: StateOpen}
	if err := Act(a, Acknowledged, "ann", t0); err != nil || a.State != StateAcknowledged || a.AckedBy != "ann" {
		t.Fatalf("ack: %v %+v", err, a)
	}
	if err := Act(a, Acknowledged, "bob", t0); err == nil {
		t.Error("second ack allowed")
	}
	if err := Act(a, Resolved, "bob", t0); err != nil || a.State != StateResolved || a.ResolvedBy != "bob" {
		t.Fatalf("resolve: %v %+v", err, a)
	}
	if err := Act(a, Resolved, "bob", t0); err == nil {
		t.Error("second resolve allowed")
	}
	if err := Act(&Alert{State: StateOpen}, Escalated, "bob", t0); err == nil {
		t.Error("a person escalated")
	}
}

// memBook is an in-memory alert store driven by the pure policy, so the
// sweeper's timing can be tested in a synctest bubble.
type memBook struct {
	mu     sync.Mutex
	p      Policy
	alerts []*Alert
	log    []string
}

func (b *memBook) event(ev wire.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	var cur *Alert
	for _, a := range b.alerts {
		if a.Active() {
			cur = a
		}
	}
	next, tr := Apply(cur, &ev, now)
	if next == nil {
		return
	}
	if cur == nil {
		b.alerts = append(b.alerts, next)
	} else {
		*cur = *next
	}
	if tr.Notifies() {
		b.log = append(b.log, string(tr))
	}
}

func (b *memBook) Sweep(_ context.Context, now time.Time) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, a := range b.alerts {
		if tr := b.p.Due(a, now); tr != None {
			b.p.Fire(a, tr, now)
			b.log = append(b.log, string(tr))
			n++
		}
	}
	return n, nil
}

// TestTimingSynctest: a flapping sensor, escalation of an unacknowledged
// alert and auto-resolve after the condition stays clear, on the fake
// clock of a synctest bubble with the real sweeper loop.
func TestTimingSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The bubble's clock starts at 2000-01-01; t0 is "now" in it.
		t0 := time.Now()
		p := Policy{AutoResolveAfter: 10 * time.Minute, EscalateAfter: 30 * time.Minute, MaxEscalations: 2}
		b := &memBook{p: p}
		ctx, cancel := context.WithCancel(t.Context())
		sw := &Sweeper{S: b, Interval: 15 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		done := make(chan struct{})
		go func() { sw.Run(ctx); close(done) }()
		ev := func(st wire.EventState) {
			b.event(limitEvent(st, "H", wire.SeverityMajor, time.Now(), 80))
		}
		// Flap every 2 minutes for 40 minutes: clear never lasts 10 minutes.
		for range 10 {
			ev(wire.EventRaised)
			time.Sleep(2 * time.Minute)
			ev(wire.EventCleared)
			time.Sleep(2 * time.Minute)
		}
		// Now clear for good: auto-resolve 10 minutes after the last clear,
		// found by the next sweep (within 15 s).
		time.Sleep(time.Hour)
		cancel()
		<-done
		if len(b.alerts) != 1 {
			t.Fatalf("%d alerts, want 1", len(b.alerts))
		}
		a := b.alerts[0]
		if a.Count != 10 || a.State != StateResolved || a.EscalationLevel != 1 {
			t.Errorf("alert: count %d state %s escalations %d; want 10, resolved, 1", a.Count, a.State, a.EscalationLevel)
		}
		// Escalated at the first sweep at or after 30 min; resolved at the
		// first sweep at or after 38 min (the last clear) + 10 min.
		if d := a.EscalatedAt.Sub(t0); d < 30*time.Minute || d >= 30*time.Minute+15*time.Second {
			t.Errorf("escalated after %s, want within a sweep interval of 30m", d)
		}
		if d := a.ResolvedAt.Sub(t0); d < 48*time.Minute || d >= 48*time.Minute+15*time.Second {
			t.Errorf("resolved after %s, want within a sweep interval of 48m", d)
		}
		if diff := cmp.Diff([]string{"opened", "escalated", "auto_resolved"}, b.log); diff != "" {
			t.Errorf("notifying transitions (-want +got):\n%s", diff)
		}
	})
}
