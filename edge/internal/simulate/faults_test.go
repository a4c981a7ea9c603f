package simulate

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smartmaint/smartmaint/models/eval"
)

func TestParseFault(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want FaultSpec
	}{
		{"pump3:bearing@2m+5m", FaultSpec{Asset: "pump3", Kind: eval.BearingWear, Start: 2 * time.Minute, Duration: 5 * time.Minute, Magnitude: 8}},
		{"pump1/flow:step@30s+2m*6", FaultSpec{Asset: "pump1", Sensor: "flow", Kind: eval.Step, Start: 30 * time.Second, Duration: 2 * time.Minute, Magnitude: 6}},
		{"pump2/vib_y:spike@45s", FaultSpec{Asset: "pump2", Sensor: "vib_y", Kind: eval.Spike, Start: 45 * time.Second, Magnitude: 8}},
		{"pump2/vib_y:SPIKE@45s*-10", FaultSpec{Asset: "pump2", Sensor: "vib_y", Kind: eval.Spike, Start: 45 * time.Second, Magnitude: -10}},
		{"pump4/current_l1:noise@0s+10s", FaultSpec{Asset: "pump4", Sensor: "current_l1", Kind: eval.NoiseBurst, Start: 0, Duration: 10 * time.Second, Magnitude: 4}},
		{"pump4:stuck@1m", FaultSpec{Asset: "pump4", Kind: eval.Stuck, Start: time.Minute, Duration: time.Minute}},
		{"pump4:drift@1m+1h", FaultSpec{Asset: "pump4", Kind: eval.Drift, Start: time.Minute, Duration: time.Hour, Magnitude: 6}},
		{"pump9/flow:dropout@10s+5s", FaultSpec{Asset: "pump9", Sensor: "flow", Kind: eval.Dropout, Start: 10 * time.Second, Duration: 5 * time.Second}},
	}
	for _, tc := range good {
		got, err := ParseFault(tc.in)
		if err != nil {
			t.Errorf("ParseFault(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseFault(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	bad := []struct{ in, want string }{
		{"", "want ASSET[/SENSOR]:KIND@START"},
		{"pump1", "want ASSET[/SENSOR]:KIND@START"},
		{"pump1:spike", "missing @START"},
		{"pump1:melt@1m", `unknown fault kind "melt"`},
		{"pump1:spike@soon", `bad start "soon"`},
		{"pump1:spike@-1m", `bad start "-1m"`},
		{"pump1:step@1m+0s", `bad duration "0s"`},
		{"pump1:step@1m+x", `bad duration "x"`},
		{"pump1:step@1m*big", `bad magnitude "big"`},
		{"pump1:step@1m*NaN", `bad magnitude "NaN"`},
		{"/flow:step@1m", "bad target"},
		{"pump1/a/b:step@1m", "bad target"},
	}
	for _, tc := range bad {
		_, err := ParseFault(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFault(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseFault checks that a parsed fault formats back to a spec that
// parses to the same fault.
func FuzzParseFault(f *testing.F) {
	for _, s := range []string{"pump3:bearing@2m+5m", "pump1/flow:step@30s+2m*6", "pump2/vib_y:spike@45s", "pump1:step@1m*big", "a:b@c+d*e", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := ParseFault(s)
		if err != nil {
			return
		}
		again, err := ParseFault(fs.String())
		if err != nil {
			t.Fatalf("ParseFault(%q) ok, but its String %q does not parse: %v", s, fs.String(), err)
		}
		if diff := cmp.Diff(fs, again); diff != "" {
			t.Fatalf("round trip of %q via %q (-first +second):\n%s", s, fs.String(), diff)
		}
	})
}

func TestPlanScheduleChecksAssetAndSensor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ fault, want string }{
		{"pump4:spike@1s", `no asset "pump4" (assets are pump1..pump3)`},
		{"pump1/vib_q:spike@1s", `no sensor "vib_q"`},
	} {
		fs, err := ParseFault(tc.fault)
		if err != nil {
			t.Fatal(err)
		}
		_, err = planSchedule([]FaultSpec{fs}, 3, time.Second)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("planSchedule(%s) = %v, want an error containing %q", tc.fault, err, tc.want)
		}
	}
	fs, _ := ParseFault("pump2/flow:step@30s+1m*5")
	got, err := planSchedule([]FaultSpec{fs}, 3, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := []assetFault{{asset: 1, fault: eval.Fault{Kind: eval.Step, Channel: 5, Start: 300, Len: 600, Magnitude: 5}}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(assetFault{})); diff != "" {
		t.Errorf("planSchedule (-want +got):\n%s", diff)
	}
}

func testSpecs(n int, step time.Duration) []spec {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]spec, n)
	for i := range out {
		out[i] = spec{asset: pumpSpec(AssetName(i), step, rng)}
	}
	return out
}

// Random faults: the first within 90 s, every kind over a long run, none
// overlapping on one asset, and the same plan from the same seed.
func TestPlanRandom(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{0.5, 1, 10} {
		step := time.Duration(float64(time.Second) / rate)
		specs := testSpecs(5, step)
		plan := planRandom(rand.New(rand.NewPCG(7, 7)), specs, 12*time.Hour, 30*time.Minute, step)
		again := planRandom(rand.New(rand.NewPCG(7, 7)), specs, 12*time.Hour, 30*time.Minute, step)
		if diff := cmp.Diff(plan, again, cmp.AllowUnexported(assetFault{})); diff != "" {
			t.Fatalf("rate %g: same seed, different plans:\n%s", rate, diff)
		}
		if len(plan) < 50 {
			t.Fatalf("rate %g: %d faults over 12 h on 5 assets, want ~110", rate, len(plan))
		}
		first := plan[0]
		for _, f := range plan {
			if f.fault.Start < first.fault.Start {
				first = f
			}
		}
		if at := time.Duration(first.fault.Start) * step; at > firstFaultBy || at < firstFaultAfter-step {
			t.Errorf("rate %g: first fault at %s, want between %s and %s", rate, at, firstFaultAfter, firstFaultBy)
		}
		kinds := map[eval.FaultKind]bool{}
		for i, f := range plan {
			kinds[f.fault.Kind] = true
			if f.fault.Len < 1 {
				t.Errorf("rate %g: fault %+v has no length", rate, f)
			}
			for _, g := range plan[i+1:] {
				if g.asset == f.asset && g.fault.Start < f.fault.End() && f.fault.Start < g.fault.End() {
					t.Errorf("rate %g: overlapping faults on asset %d: %+v and %+v", rate, f.asset, f.fault, g.fault)
				}
			}
		}
		if len(kinds) != len(eval.FaultKinds()) {
			t.Errorf("rate %g: kinds %v, want all %d", rate, kinds, len(eval.FaultKinds()))
		}
	}
}
