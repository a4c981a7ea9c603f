package eval

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestEvaluate(t *testing.T) {
	const n = 1440
	times := make([]int64, n)
	for i := range times {
		times[i] = int64(i) * int64(time.Minute)
	}
	alarm := make([]bool, n)
	set := func(from, to int) {
		for i := from; i <= to; i++ {
			alarm[i] = true
		}
	}
	windows := []Window{{100, 200}, {500, 510}, {900, 1000}}
	set(105, 106)   // detects window 1 after 5 min
	set(110, 110)   // same event (gap 3 ≤ MergeGap)
	set(515, 515)   // within tolerance after window 2 → detection, delay 15 min
	set(1200, 1201) // false alarm
	set(1300, 1300) // false alarm
	// window 3 missed
	got := Evaluate(times, alarm, windows, Options{Tolerance: 10, MergeGap: 5, Sensors: 2})
	want := Result{
		Windows: 3, Detected: 2, Events: 4, FalseEvents: 2,
		Precision: 0.5, Recall: 2.0 / 3, F1: 2 * 0.5 * (2.0 / 3) / (0.5 + 2.0/3),
		FalsePerSensorDay: 1, // 2 false events / (2 sensors × 1 day)
		Delays:            []time.Duration{5 * time.Minute, 15 * time.Minute},
		Days:              1, Sensors: 2, Evaluated: n,
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got.MedianDelay() != 15*time.Minute || got.MeanDelay() != 10*time.Minute {
		t.Errorf("delays %v %v", got.MedianDelay(), got.MeanDelay())
	}
}

func TestWindowsMergeAndSkipDropouts(t *testing.T) {
	got := Windows([]Fault{{Kind: Step, Start: 10, Len: 10}, {Kind: Spike, Start: 15, Len: 10}, {Kind: Dropout, Start: 50, Len: 5}, {Kind: Stuck, Start: 30, Len: 2}})
	if diff := cmp.Diff([]Window{{10, 25}, {30, 32}}, got); diff != "" {
		t.Error(diff)
	}
}

func TestGenerateDeterministic(t *testing.T) {
	gen := func() Dataset {
		rng := rand.New(rand.NewPCG(5, 6))
		spec := PumpSpec("p", time.Minute)
		return Generate(spec, rng, SuiteStart, 2000, 200, RandomFaults(rng, spec, 2000, 200, 6, 60, FaultKinds()))
	}
	a, b := gen(), gen()
	if diff := cmp.Diff(a, b, cmpopts.EquateNaNs()); diff != "" {
		t.Fatalf("same seed, different data:\n%s", diff)
	}
}

func TestFaultsChangeOnlyTheirWindow(t *testing.T) {
	spec := PumpSpec("p", time.Minute)
	clean := Generate(spec, rand.New(rand.NewPCG(1, 1)), SuiteStart, 600, 0, nil)
	for _, k := range FaultKinds() {
		t.Run(k.String(), func(t *testing.T) {
			f := Fault{Kind: k, Channel: 2, Start: 300, Len: 100, Magnitude: 5}
			d := Generate(spec, rand.New(rand.NewPCG(1, 1)), SuiteStart, 600, 0, []Fault{f})
			in := NewInjector(spec, []Fault{f}, nil)
			chans := map[int]bool{}
			for _, c := range in.Channels(f) {
				chans[c] = true
			}
			changed := 0
			for i := range d.Rows {
				for c := range d.Rows[i] {
					same := d.Rows[i][c] == clean.Rows[i][c]
					inside := i >= f.Start && i < f.End() && chans[c]
					if !same && !inside {
						t.Fatalf("row %d channel %d changed outside the fault", i, c)
					}
					if !same {
						changed++
					}
				}
			}
			if changed == 0 {
				t.Fatal("fault changed nothing")
			}
			if k == Dropout && !math.IsNaN(d.Rows[350][2]) {
				t.Error("dropout did not produce a missing value")
			}
			if k == Stuck && d.Rows[350][2] != d.Rows[399][2] {
				t.Error("stuck value moved")
			}
		})
	}
}

func TestParseFaultKind(t *testing.T) {
	for _, k := range FaultKinds() {
		got, err := ParseFaultKind(k.String())
		if err != nil || got != k {
			t.Errorf("%v: %v %v", k, got, err)
		}
	}
	if _, err := ParseFaultKind("meteor"); err == nil {
		t.Error("unknown kind accepted")
	}
}
