package models

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/golden files")

// signal is an AR(1) process plus white noise, sampled once a minute.
func signal(seed uint64, n int) []float64 {
	rng := rand.New(rand.NewPCG(seed, 42))
	out := make([]float64, n)
	ar := 0.0
	for i := range out {
		ar = 0.9*ar + 0.3*rng.NormFloat64()
		out[i] = 50 + ar + 0.2*rng.NormFloat64()
	}
	return out
}

const minute = int64(60e9)

func run(d Detector, xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = d.Update(int64(i)*minute, x)
	}
	return out
}

func TestTailCalibration(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	tl := NewTail(1e6, 0.01, 0, nil)
	for i := 0; i < 200000; i++ {
		tl.Observe(math.Abs(rng.NormFloat64()))
	}
	tl.refresh()
	// Inside the body the empirical tail must match the half-normal.
	for _, c := range []struct{ z, p float64 }{{1, 0.3173}, {2, 0.0455}} {
		if got := tl.P(c.z); math.Abs(got-c.p)/c.p > 0.15 {
			t.Errorf("P(|Z|≥%v) = %v, want %v ±15%%", c.z, got, c.p)
		}
	}
	// Beyond the 99th percentile the exponential tail is conservative (p
	// larger than the Gaussian's) but must still decrease fast.
	p5 := tl.P(5)
	if !(p5 > 5.7e-7 && p5 < 1e-3) {
		t.Errorf("P(|Z|≥5) = %v, want between the Gaussian 5.7e-7 and 1e-3", p5)
	}
	prev := 1.0
	for s := 0.0; s < 50; s += 0.25 {
		p := tl.P(s)
		if p > prev+1e-12 || p < 0 || p > 1 {
			t.Fatalf("P not monotone in [0,1] at %v: %v after %v", s, p, prev)
		}
		prev = p
		if sc := tl.Score(s); sc < 0 || sc > 1 {
			t.Fatalf("score %v", sc)
		}
	}
}

func TestCombine(t *testing.T) {
	if got := Combine(0.5); got != 0.5 {
		t.Errorf("one score: %v", got)
	}
	if got, want := Combine(0.5, 0.2, math.NaN()), 0.5-math.Log10(2)/Decades; math.Abs(got-want) > 1e-12 {
		t.Errorf("two scores: %v want %v", got, want)
	}
	if got := Combine(0.01, 0.01, 0.01); got != 0 {
		t.Errorf("clamped: %v", got)
	}
	if s := ScoreFromP(PFromScore(0.37)); math.Abs(s-0.37) > 1e-12 {
		t.Errorf("round trip %v", s)
	}
}

// inject applies a fault to a copy of xs.
type fault func(i int, x float64) float64

func TestDetectorsFindTheirFault(t *testing.T) {
	const n, at = 3000, 2000
	base := signal(7, n)
	tests := []struct {
		det   string
		fault fault
		until int // last row of the fault (inclusive)
	}{
		{NameEWMA, func(i int, x float64) float64 { return x + 8 }, at},
		{NameMAD, func(i int, x float64) float64 { return x - 8 }, at},
		{NameSpike, func(i int, x float64) float64 { return x + 4 }, at},
		{NameSpread, func(i int, x float64) float64 { return x + 2*math.Sin(float64(i)*2.1) }, at + 60},
		{NameCUSUM, func(i int, x float64) float64 { return x + 1.5 }, at + 300},
		{NameStuck, func(i int, x float64) float64 { return 50.123 }, at + 30},
		{NameEnsemble, func(i int, x float64) float64 { return x + 8 }, at},
		{NameEnsemble, func(i int, x float64) float64 { return 50.123 }, at + 30},
	}
	for _, tc := range tests {
		t.Run(tc.det, func(t *testing.T) {
			xs := append([]float64(nil), base...)
			for i := at; i <= tc.until; i++ {
				xs[i] = tc.fault(i, xs[i])
			}
			d, err := New(tc.det)
			if err != nil {
				t.Fatal(err)
			}
			sc := run(d, xs)
			false_ := 0
			for i := 200; i < at; i++ {
				if sc[i] >= d.Threshold() {
					false_++
				}
			}
			if false_ > 3 {
				t.Errorf("%d false alarms in %d normal readings", false_, at-200)
			}
			hit := -1
			for i := at; i <= tc.until+5 && i < n; i++ {
				if sc[i] >= d.Threshold() {
					hit = i
					break
				}
			}
			if hit < 0 {
				mx := 0.0
				for i := at; i <= tc.until; i++ {
					mx = math.Max(mx, sc[i])
				}
				t.Fatalf("fault not detected (max score %.3f, threshold %.2f)", mx, d.Threshold())
			}
			t.Logf("detected after %d readings", hit-at)
		})
	}
}

func TestScoresBoundedAndDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	xs := make([]float64, 4000)
	for i := range xs {
		switch rng.IntN(50) {
		case 0:
			xs[i] = math.NaN()
		case 1:
			xs[i] = math.Inf(1 - 2*rng.IntN(2))
		case 2:
			xs[i] = 1e300
		case 3:
			xs[i] = xs[max(i-1, 0)]
		default:
			xs[i] = rng.NormFloat64() * math.Exp(rng.NormFloat64())
		}
	}
	for _, name := range Builtins() {
		a, _ := New(name)
		b, _ := New(name)
		sa, sb := run(a, xs), run(b, xs)
		for i, s := range sa {
			if !(s >= 0 && s <= 1) {
				t.Fatalf("%s: score %v at %d (value %v)", name, s, i, xs[i])
			}
		}
		if diff := cmp.Diff(sa, sb); diff != "" {
			t.Fatalf("%s not deterministic", name)
		}
	}
}

func TestConstantSignal(t *testing.T) {
	// A constant sensor is stuck by definition, but scale-based detectors
	// must not divide by zero or alarm on it forever.
	for _, name := range []string{NameEWMA, NameMAD, NameSpike, NameSpread, NameCUSUM} {
		d, _ := New(name)
		for i := 0; i < 500; i++ {
			if s := d.Update(int64(i), 3.0); s != 0 && s >= d.Threshold() {
				t.Fatalf("%s alarms on a constant at %d (%v)", name, i, s)
			}
		}
	}
}

func f64(v float64) *float64 { return &v }

func TestLimits(t *testing.T) {
	cfg := LimitsConfig{HH: f64(100), H: f64(80), L: f64(20), LL: f64(10), Deadband: 2, MinDuration: 2 * minute}
	type step struct {
		v    float64
		want Level
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"inside", []step{{50, LevelNone}, {79.9, LevelNone}}},
		{"needs min duration", []step{{81, LevelNone}, {81, LevelNone}, {81, LevelH}, {50, LevelNone}}},
		{"glitch too short", []step{{81, LevelNone}, {50, LevelNone}, {81, LevelNone}, {50, LevelNone}}},
		{"deadband holds", []step{{81, LevelNone}, {81, LevelNone}, {81, LevelH}, {79, LevelH}, {78.5, LevelH}, {77.9, LevelNone}}},
		{"escalate and de-escalate", []step{{85, LevelNone}, {101, LevelNone}, {101, LevelNone}, {101, LevelHH}, {99, LevelHH}, {97, LevelH}, {50, LevelNone}}},
		{"low side", []step{{15, LevelNone}, {15, LevelNone}, {15, LevelL}, {9, LevelL}, {9, LevelL}, {9, LevelLL}, {21, LevelL}, {23, LevelNone}}},
		{"NaN keeps state", []step{{81, LevelNone}, {81, LevelNone}, {81, LevelH}, {math.NaN(), LevelH}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewLimits(cfg)
			for i, s := range tc.steps {
				d.Update(int64(i)*minute, s.v)
				if d.Active() != s.want {
					t.Fatalf("step %d (value %v): level %q, want %q", i, s.v, d.Active(), s.want)
				}
			}
		})
	}
	if err := (LimitsConfig{H: f64(10), HH: f64(5)}).Validate(); err == nil {
		t.Error("HH below H accepted")
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestSymEigen(t *testing.T) {
	a := [][]float64{{4, 1, 2}, {1, 3, 0.5}, {2, 0.5, 5}}
	orig := [][]float64{{4, 1, 2}, {1, 3, 0.5}, {2, 0.5, 5}}
	vals, vecs := symEigen(a)
	for k := range vals {
		if k > 0 && vals[k] > vals[k-1] {
			t.Fatalf("not descending: %v", vals)
		}
		for i := 0; i < 3; i++ {
			av := 0.0
			for j := 0; j < 3; j++ {
				av += orig[i][j] * vecs[k][j]
			}
			if math.Abs(av-vals[k]*vecs[k][i]) > 1e-9 {
				t.Fatalf("A v != λ v for eigenpair %d", k)
			}
		}
	}
}

// correlated returns rows of three sensors driven by one load.
func correlated(seed uint64, n int) [][]float64 {
	rng := rand.New(rand.NewPCG(seed, 9))
	rows := make([][]float64, n)
	load := 0.0
	for i := range rows {
		load = 0.99*load + 0.1*rng.NormFloat64()
		rows[i] = []float64{
			10 + 5*load + 0.1*rng.NormFloat64(),
			3 + 2*load + 0.05*rng.NormFloat64(),
			60 - 4*load + 0.1*rng.NormFloat64(),
		}
	}
	return rows
}

func TestPCADetectsBrokenCorrelation(t *testing.T) {
	rows := correlated(1, 3000)
	p, err := TrainPCA(rows[:1000], DefaultPCAConfig())
	if err != nil {
		t.Fatal(err)
	}
	if k := len(p.Params().Components); k != 1 {
		t.Errorf("%d components kept, want 1 (one load drives all)", k)
	}
	// Fault: sensor 2 loses its relationship (stays where it was) while
	// the others move, each value staying inside its normal range.
	for i := 2000; i < 2100; i++ {
		rows[i][1] = rows[1999][1]
	}
	false_, hit := 0, 0
	for i, r := range rows[1000:] {
		s := p.UpdateRow(0, r)
		if s >= p.Threshold() {
			if i+1000 >= 2000 && i+1000 < 2100 {
				hit++
			} else {
				false_++
			}
		}
	}
	if false_ > 3 {
		t.Errorf("%d false alarms in 1900 normal rows", false_)
	}
	if hit < 30 {
		t.Errorf("flagged %d of 100 rows with a broken relationship", hit)
	}
	if _, err := TrainPCA(rows[:5], DefaultPCAConfig()); err == nil {
		t.Error("trained on 5 rows")
	}
}

func TestGolden(t *testing.T) {
	xs := signal(11, 2000)
	for i := 1200; i < 1300; i++ {
		xs[i] += 3 // step
	}
	xs[1500] += 10 // spike
	for i := 1700; i < 1760; i++ {
		xs[i] = xs[1699] // stuck
	}
	for _, name := range Builtins() {
		t.Run(name, func(t *testing.T) {
			d, _ := New(name)
			var b strings.Builder
			for i, s := range run(d, xs) {
				if i%20 == 0 || s >= d.Threshold() {
					fmt.Fprintf(&b, "%d %.4f\n", i, s)
				}
			}
			path := filepath.Join("testdata", "golden", name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(lines(string(want)), lines(b.String())); diff != "" {
				t.Errorf("scores differ from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
