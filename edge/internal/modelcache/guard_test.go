package modelcache

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestGuard(t *testing.T) {
	p := GuardPolicy{Window: 10 * time.Minute, MinReadings: 100, MaxFlagShare: 0.2}
	type step struct {
		after           time.Duration // sleep before observing
		scored, flagged int
		want            Decision
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"implausible share rolls back once enough readings", []step{
			{time.Second, 50, 50, Watching}, // 100 % but only 50 readings: too few to judge
			{time.Second, 50, 0, Rollback},  // 50 % of 100
			{time.Second, 1000, 0, Rollback},
		}},
		{"plausible share is kept after the window", []step{
			{time.Minute, 500, 20, Watching},
			{9 * time.Minute, 500, 20, Keep},
			{time.Minute, 500, 500, Keep}, // verdict is final
		}},
		{"late burst inside the window still rolls back", []step{
			{time.Minute, 500, 0, Watching},
			{8 * time.Minute, 500, 400, Rollback}, // 400 of 1000 = 40 %
		}},
		{"too few readings in the window are kept", []step{
			{11 * time.Minute, 10, 10, Keep},
		}},
		{"exactly at the limit is not a rollback", []step{
			{time.Second, 100, 20, Watching},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := NewGuard(p)
				for i, s := range c.steps {
					time.Sleep(s.after)
					if got := g.Observe(s.scored, s.flagged); got != s.want {
						t.Fatalf("step %d: Observe(%d, %d) = %s, want %s (%s)", i, s.scored, s.flagged, got, s.want, g.Reason())
					}
				}
			})
		})
	}
}

func TestGuardReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGuard(DefaultGuardPolicy())
		time.Sleep(90 * time.Second)
		g.Observe(400, 100)
		want := "flagged 100 of 400 readings (25.0 %, limit 20.0 %) in 1m30s since activation"
		if got := g.Reason(); got != want {
			t.Fatalf("Reason = %q, want %q", got, want)
		}
	})
}

func TestGuardPolicyValidate(t *testing.T) {
	if err := DefaultGuardPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	err := GuardPolicy{MaxFlagShare: 1.5}.Validate()
	for _, want := range []string{"window", "min_readings", "max_flag_share"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v does not mention %s", err, want)
		}
	}
}
