package models

import (
	"math/rand/v2"
	"testing"
)

// No built-in of the default ensemble may call a reading anomalous before
// it has seen DefaultWarmup readings, however wild they are: the start-up
// alarm storm of a fresh edge came from medians and MADs of 8 readings.
// Right after the warm-up a gross outlier must score.
func TestWarmupThenScores(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, name := range []string{NameEnsemble, NameMAD, NameSpike, NameStuck, NameSpread} {
		d, err := New(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < DefaultWarmup; i++ {
			v := 10 + rng.NormFloat64()
			if i%7 == 6 {
				v = 1e3 // an outlier that a median of 8 would call certain
			}
			if name == NameStuck {
				v = 4 // stuck from the start
			}
			if s := d.Update(int64(i)*minute, v); s != 0 {
				t.Errorf("%s: reading %d scored %.2f inside the warm-up", name, i, s)
			}
		}
	}
	for _, name := range []string{NameEnsemble, NameSpike} {
		d, _ := New(name)
		xs := signal(5, DefaultWarmup+5)
		run(d, xs)
		if s := d.Update(int64(len(xs))*minute, xs[len(xs)-1]+50); s < d.Threshold() {
			t.Errorf("%s: a 100σ outlier right after the warm-up scored %.2f, want ≥ %.2f", name, s, d.Threshold())
		}
	}
}

// The level detector (rolling median/MAD) then calibrates for
// levelMinTail readings: on a slow, smooth signal (a bearing temperature)
// the z-scores of a short window are far wider than its normal prior says,
// and trusting that prior raised false events minutes after a fresh start
// (edge/internal/detect TestFreshPlantIsQuiet). While calibrating it
// reports only near-certain outliers: deviations that the prior alone
// calls anomalous score 0, a gross outlier scores. After it, a large
// outlier scores.
func TestLevelCalibratesBeforeScoring(t *testing.T) {
	d, _ := New(NameMAD)
	c := DefaultMADConfig()
	c.MinTail = 0
	raw := NewMAD(c) // the same detector without the calibration
	rawHigh := 0
	xs := signal(5, DefaultWarmup+levelMinTail)
	for i, x := range xs {
		want := "0"
		switch {
		case i > DefaultWarmup && i%100 == 60:
			x += 4 // ~5.5σ of the signal, ~8σ of its fast noise
		case i > DefaultWarmup && i%100 == 10:
			x += 50 // ~70σ
			want = "≥ threshold"
		}
		s := d.Update(int64(i)*minute, x)
		if raw.Update(int64(i)*minute, x) >= raw.Threshold() && want == "0" {
			rawHigh++
		}
		if (want == "0") != (s == 0) || (want != "0" && s < d.Threshold()) {
			t.Errorf("reading %d (+%.0f) scored %.2f while calibrating, want %s", i, x-xs[i], s, want)
		}
	}
	if rawHigh == 0 {
		t.Errorf("without calibration no 8σ deviation scored anomalous: the test shows nothing")
	}
	n := int64(len(xs))
	if s := d.Update(n*minute, xs[len(xs)-1]+10); s < d.Threshold() {
		t.Errorf("a 14σ outlier after the calibration scored %.2f, want ≥ %.2f", s, d.Threshold())
	}
}

// The spike detector measures a reading against the median of the three
// before it, so a step stands out in two consecutive readings (enough,
// with the level detector, for an event that needs three in a row) while
// a lone spike stands out once.
func TestSpikeSeesStepTwiceAndSpikeOnce(t *testing.T) {
	xs := signal(9, 400)
	for i := 300; i < len(xs); i++ {
		xs[i] += 5 // ~8σ of the fast variation
	}
	xs[200] += 5
	d, _ := New(NameSpike)
	sc := run(d, xs)
	thr := d.Threshold()
	var high []int
	for i, s := range sc {
		if s >= thr {
			high = append(high, i)
		}
	}
	want := []int{200, 300, 301}
	if len(high) != len(want) {
		t.Fatalf("readings at or above the threshold %v, want %v", high, want)
	}
	for i := range want {
		if high[i] != want[i] {
			t.Fatalf("readings at or above the threshold %v, want %v", high, want)
		}
	}
}
