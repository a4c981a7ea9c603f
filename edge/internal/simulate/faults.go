package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/models/eval"
)

// FaultSpec is one scheduled fault, in wall-clock terms relative to the
// start of the run. It is what ParseFault reads from
//
//	ASSET[/SENSOR]:KIND@START[+DURATION][*MAGNITUDE]
//
// for example "pump3:bearing@2m+5m", "pump1/flow:step@30s+2m*6" or
// "pump2/vib_y:spike@45s". KIND is spike, step, drift, stuck, noise_burst
// (or noise), bearing_wear (or bearing) or dropout. SENSOR defaults to
// vib_x and is ignored by bearing_wear (vib_x and bearing_de_temp). The
// duration defaults to one sample for a spike, 5m for bearing wear and 1m
// otherwise; the magnitude is in standard deviations of the sensor's
// normal variation (for a drift or bearing wear, the size reached at the
// end) and defaults by kind.
type FaultSpec struct {
	Asset     string
	Sensor    string
	Kind      eval.FaultKind
	Start     time.Duration
	Duration  time.Duration // 0: one sample
	Magnitude float64
}

// String formats the spec in ParseFault's syntax.
func (f FaultSpec) String() string {
	var b strings.Builder
	b.WriteString(f.Asset)
	if f.Sensor != "" {
		b.WriteString("/" + f.Sensor)
	}
	fmt.Fprintf(&b, ":%s@%s", f.Kind, f.Start)
	if f.Duration > 0 {
		fmt.Fprintf(&b, "+%s", f.Duration)
	}
	fmt.Fprintf(&b, "*%s", strconv.FormatFloat(f.Magnitude, 'g', -1, 64))
	return b.String()
}

// defaultMagnitude is a clearly visible but not absurd size per kind, in
// sigmas, within the ranges models/eval.RandomFaults draws from.
func defaultMagnitude(k eval.FaultKind) float64 {
	switch k {
	case eval.Spike:
		return 8
	case eval.Step:
		return 5
	case eval.Drift:
		return 6
	case eval.NoiseBurst:
		return 4
	case eval.BearingWear:
		return 8
	}
	return 0
}

func defaultDuration(k eval.FaultKind) time.Duration {
	switch k {
	case eval.Spike:
		return 0
	case eval.BearingWear:
		return 5 * time.Minute
	}
	return time.Minute
}

func kindAlias(k string) string {
	switch k {
	case "bearing", "bearing-wear":
		return "bearing_wear"
	case "noise", "noise-burst":
		return "noise_burst"
	}
	return k
}

// ParseFault parses one scheduled fault (see FaultSpec). It checks the
// syntax only; Plan checks that the asset and sensor exist.
func ParseFault(s string) (FaultSpec, error) {
	var f FaultSpec
	target, rest, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || target == "" {
		return f, fmt.Errorf("fault %q: want ASSET[/SENSOR]:KIND@START[+DURATION][*MAGNITUDE]", s)
	}
	f.Asset, f.Sensor, _ = strings.Cut(target, "/")
	if f.Asset == "" || strings.Contains(f.Sensor, "/") {
		return f, fmt.Errorf("fault %q: bad target %q, want ASSET or ASSET/SENSOR", s, target)
	}
	kind, when, ok := strings.Cut(rest, "@")
	if !ok {
		return f, fmt.Errorf("fault %q: missing @START", s)
	}
	kind = kindAlias(strings.ToLower(strings.TrimSpace(kind)))
	k, err := eval.ParseFaultKind(kind)
	if err != nil {
		return f, fmt.Errorf("fault %q: %w (want spike, step, drift, stuck, noise_burst, bearing_wear or dropout)", s, err)
	}
	f.Kind = k
	f.Magnitude = defaultMagnitude(k)
	f.Duration = defaultDuration(k)
	if when, mag, ok := strings.Cut(when, "*"); ok {
		m, err := strconv.ParseFloat(mag, 64)
		if err != nil || math.IsNaN(m) || math.IsInf(m, 0) {
			return f, fmt.Errorf("fault %q: bad magnitude %q", s, mag)
		}
		f.Magnitude = m
		return parseWhen(s, when, f)
	}
	return parseWhen(s, when, f)
}

func parseWhen(s, when string, f FaultSpec) (FaultSpec, error) {
	start, dur, hasDur := strings.Cut(when, "+")
	d, err := time.ParseDuration(start)
	if err != nil || d < 0 {
		return f, fmt.Errorf("fault %q: bad start %q (a duration from the start of the run, e.g. 90s)", s, start)
	}
	f.Start = d
	if hasDur {
		d, err := time.ParseDuration(dur)
		if err != nil || d <= 0 {
			return f, fmt.Errorf("fault %q: bad duration %q (e.g. 5m)", s, dur)
		}
		f.Duration = d
	}
	return f, nil
}

// assetFault is a planned fault of one asset in sample rows.
type assetFault struct {
	asset int
	fault eval.Fault
}

// rows converts a duration to a number of samples at step, at least 1.
func rows(d, step time.Duration) int {
	n := int(math.Round(float64(d) / float64(step)))
	if n < 1 {
		n = 1
	}
	return n
}

// planSchedule turns specs into per-asset faults.
func planSchedule(specs []FaultSpec, assets int, step time.Duration) ([]assetFault, error) {
	var out []assetFault
	for _, s := range specs {
		a := -1
		for i := 0; i < assets; i++ {
			if AssetName(i) == s.Asset {
				a = i
			}
		}
		if a < 0 {
			return nil, fmt.Errorf("fault %s: no asset %q (assets are pump1..pump%d)", s, s.Asset, assets)
		}
		ch := 0
		if s.Sensor != "" {
			ch = -1
			for i, n := range sensorNames {
				if n == s.Sensor {
					ch = i
				}
			}
			if ch < 0 {
				return nil, fmt.Errorf("fault %s: no sensor %q (sensors are %s)", s, s.Sensor, strings.Join(sensorNames[:], ", "))
			}
		}
		n := 1
		if s.Duration > 0 {
			n = rows(s.Duration, step)
		}
		start := int(float64(s.Start) / float64(step))
		out = append(out, assetFault{asset: a, fault: eval.Fault{Kind: s.Kind, Channel: ch, Start: start, Len: n, Magnitude: s.Magnitude}})
	}
	return out, nil
}

// Random fault policy.
const (
	// firstFaultBy: the first random fault starts within this time, so a
	// demo shows an alert quickly; firstFaultAfter gives detectors a
	// minute of normal data first.
	firstFaultAfter = 30 * time.Second
	firstFaultBy    = 90 * time.Second
	// firstFaultSigmas sizes the first step in units of the sensor's noise.
	// The simulated load moves current, pressure and flow by up to about
	// 1σ per second, so an 8σ step is only a few times the normal change
	// and the default detectors catch it within 10 s in about half the
	// runs; 16σ is caught in 59 of 60 (edge/internal/detect plant_test).
	firstFaultSigmas = 16
	// quietStart is the fault-free time before the other random faults,
	// so adaptive detectors have learnt each sensor.
	quietStart = 5 * time.Minute
	// randomHorizon bounds planning when the run has no --duration.
	randomHorizon = 24 * time.Hour
)

// planRandom draws faults for every asset: first one large step within
// firstFaultBy on a random asset, then about one fault per asset per
// every, with models/eval.RandomFaults choosing kinds, lengths and sizes
// (its lengths are read as seconds, so a fault lasts as long at any rate).
func planRandom(rng *rand.Rand, specs []spec, duration, every time.Duration, step time.Duration) []assetFault {
	horizon := duration
	if horizon <= 0 {
		horizon = randomHorizon
	}
	var out []assetFault
	if horizon > firstFaultAfter {
		by := min(firstFaultBy, horizon)
		at := firstFaultAfter + time.Duration(rng.Int64N(int64(by-firstFaultAfter)+1))
		a := rng.IntN(len(specs))
		ch := 3 + rng.IntN(3) // current, pressure or flow: a process upset
		dur := min(time.Minute, max(horizon-at, step))
		out = append(out, assetFault{asset: a, fault: eval.Fault{Kind: eval.Step, Channel: ch, Start: int(at / step), Len: rows(dur, step), Magnitude: firstFaultSigmas * sign(rng)}})
	}
	if every <= 0 || horizon <= quietStart {
		return out
	}
	secs := int(horizon / time.Second)
	quiet := int(quietStart / time.Second)
	count := int(float64(horizon-quietStart) / float64(every))
	if count < 1 {
		return out
	}
	perSec := float64(time.Second) / float64(step)
	for a, s := range specs {
		// Spec in one-second rows, so RandomFaults' row lengths are seconds.
		sec := s.asset
		sec.Step = time.Second
		for _, f := range eval.RandomFaults(rng, sec, secs, quiet, count, 60, eval.FaultKinds()) {
			f.Start = int(float64(f.Start) * perSec)
			if f.Kind != eval.Spike {
				f.Len = max(1, int(math.Round(float64(f.Len)*perSec)))
			}
			out = append(out, assetFault{asset: a, fault: f})
		}
	}
	return out
}

func sign(rng *rand.Rand) float64 {
	if rng.IntN(2) == 0 {
		return -1
	}
	return 1
}
