package alert

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func series(n int, step time.Duration, f func(i int) float64) ([]time.Time, []float64) {
	ts := make([]time.Time, n)
	vs := make([]float64, n)
	for i := range n {
		ts[i] = t0.Add(time.Duration(i) * step)
		vs[i] = f(i)
	}
	return ts, vs
}

func TestTimeToLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	last := t0.Add(59 * time.Minute)
	cases := []struct {
		name   string
		f      func(i int) float64
		n      int
		limits []float64
		ok     bool
		limit  float64
		eta    time.Time
	}{
		{"rising to max", func(i int) float64 { return 20 + float64(i) }, 60, []float64{0, 150}, true, 150, last.Add(71 * time.Minute)},
		{"nearest limit wins", func(i int) float64 { return 20 + float64(i) }, 60, []float64{200, 100, 150}, true, 100, last.Add(21 * time.Minute)},
		{"falling to min", func(i int) float64 { return 100 - 0.5*float64(i) }, 60, []float64{10, 500}, true, 10, last.Add(121 * time.Minute)},
		{"spikes do not move the fit", func(i int) float64 {
			if i%10 == 3 {
				return 1000
			}
			return 20 + float64(i)
		}, 60, []float64{150}, true, 150, last.Add(71 * time.Minute)},
		{"noise is no trend", func(int) float64 { return 50 + rng.NormFloat64() }, 60, []float64{0, 100}, false, 0, time.Time{}},
		{"too few readings", func(i int) float64 { return float64(i) }, MinTrendPoints - 1, []float64{100}, false, 0, time.Time{}},
		{"no limit ahead", func(i int) float64 { return 200 + float64(i) }, 60, []float64{150}, false, 0, time.Time{}},
		{"beyond horizon", func(i int) float64 { return 1e-6 * float64(i) }, 60, []float64{1e6}, false, 0, time.Time{}},
		{"no limits", func(i int) float64 { return float64(i) }, 60, nil, false, 0, time.Time{}},
		{"NaN limit ignored", func(i int) float64 { return float64(i) }, 60, []float64{math.NaN(), 100}, true, 100, last.Add(41 * time.Minute)},
	}
	for _, c := range cases {
		ts, vs := series(c.n, time.Minute, c.f)
		// Newest first, as the database returns them.
		for i, j := 0, len(ts)-1; i < j; i, j = i+1, j-1 {
			ts[i], ts[j] = ts[j], ts[i]
			vs[i], vs[j] = vs[j], vs[i]
		}
		f, ok := TimeToLimit(ts, vs, c.limits)
		if ok != c.ok {
			t.Errorf("%s: ok = %v, want %v (%+v)", c.name, ok, c.ok, f)
			continue
		}
		if !ok {
			continue
		}
		if f.Limit != c.limit || f.ETA.Sub(c.eta).Abs() > time.Second {
			t.Errorf("%s: limit %g at %s, want %g at %s", c.name, f.Limit, f.ETA, c.limit, c.eta)
		}
	}
}

func FuzzTimeToLimit(f *testing.F) {
	f.Add(20.0, 1.0, 150.0, int64(60))
	f.Add(100.0, -0.5, 10.0, int64(1))
	f.Add(0.0, 0.0, 0.0, int64(0))
	f.Fuzz(func(t *testing.T, start, slope, limit float64, stepSec int64) {
		ts, vs := series(30, time.Duration(stepSec)*time.Second, func(i int) float64 { return start + slope*float64(i) })
		fc, ok := TimeToLimit(ts, vs, []float64{limit})
		if ok && (math.IsNaN(fc.PerHour) || fc.ETA.IsZero() || fc.Limit != limit) {
			t.Errorf("bad forecast %+v", fc)
		}
	})
}

func TestCursor(t *testing.T) {
	for _, id := range []int64{1, 42, math.MaxInt64} {
		got, err := decodeCursor(encodeCursor(id))
		if err != nil || got != id {
			t.Errorf("round trip %d: %d %v", id, got, err)
		}
	}
	for _, bad := range []string{"", "x", "YWxlcnQ6", "YWxlcnQ6LTE", "Z2FwOjE"} {
		if _, err := decodeCursor(bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor(7))
	f.Add("YWxlcnQ6LTE")
	f.Fuzz(func(t *testing.T, c string) {
		id, err := decodeCursor(c)
		if err == nil && (id <= 0 || encodeCursor(id) != c) {
			t.Errorf("cursor %q decoded to %d, which encodes differently", c, id)
		}
	})
}
