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
	for _, name := range []string{NameEnsemble, NameMAD, NameSpike} {
		d, _ := New(name)
		xs := signal(5, DefaultWarmup+5)
		run(d, xs)
		if s := d.Update(int64(len(xs))*minute, xs[len(xs)-1]+50); s < d.Threshold() {
			t.Errorf("%s: a 100σ outlier right after the warm-up scored %.2f, want ≥ %.2f", name, s, d.Threshold())
		}
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
