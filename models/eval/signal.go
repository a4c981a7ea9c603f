// Package eval generates labelled synthetic plant signals and measures
// detection quality on them.
//
// The generators are a public API shared with the plant simulator
// (`sm-edge simulate`): an AssetSpec describes an asset's correlated
// channels (a shared AR(1) load process with daily and shift patterns, each
// channel's own AR(1) disturbance and white noise); a Generator produces its
// rows; an Injector applies Faults (spike, step, drift, stuck value, noise
// burst, bearing wear with rising temperature, dropout) and the faults
// double as ground truth. Everything takes a *rand.Rand, so a seed gives the
// same data on every run and machine.
//
// Evaluate scores alarms against ground truth event-wise: precision, recall
// and F1 with a tolerance window, false alarms per sensor-day and detection
// delay.
package eval

import (
	"math"
	"math/rand/v2"
	"time"
)

// ChannelSpec describes one sensor of an asset. Its value is
//
//	Base + LoadGain·load + Daily·sin(2π·hour/24) + ar + Noise·N(0,1)
//
// with ar an AR(1) process ar ← ARPhi·ar + ARSigma·N(0,1), rounded to
// Quantum when Quantum > 0 (a transmitter's resolution).
type ChannelSpec struct {
	Name     string
	Unit     string
	Base     float64
	LoadGain float64
	Daily    float64
	ARPhi    float64
	ARSigma  float64
	Noise    float64
	Quantum  float64
	// HeavyTail > 0 replaces the Gaussian noise by a Student-t with that
	// many degrees of freedom (real sensors have heavier tails).
	HeavyTail float64
}

// Sigma is the approximate standard deviation of the channel's fast
// variation (AR plus noise), the unit of fault magnitudes.
func (c ChannelSpec) Sigma() float64 {
	ar := 0.0
	if c.ARPhi < 1 {
		ar = c.ARSigma * c.ARSigma / (1 - c.ARPhi*c.ARPhi)
	}
	s := math.Sqrt(ar + c.Noise*c.Noise)
	if s == 0 {
		s = 1
	}
	return s
}

// AssetSpec describes an asset: its channels and the shared load process.
type AssetSpec struct {
	Name     string
	Step     time.Duration
	Channels []ChannelSpec
	// The load is an AR(1) around 1 (LoadPhi, LoadSigma) plus a shift
	// pattern: ShiftAmp added during the day shift (06:00–22:00, ramped
	// over half an hour as machines are started and stopped) and a
	// daily sinusoid of amplitude LoadDaily.
	LoadPhi   float64
	LoadSigma float64
	ShiftAmp  float64
	LoadDaily float64
}

// Channel returns the index of the named channel, or -1.
func (a AssetSpec) Channel(name string) int {
	for i, c := range a.Channels {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// PumpSpec is a centrifugal pump sampled every step: vibration (mm/s),
// motor current (A), discharge pressure (bar) and bearing temperature (°C),
// all driven by the same load so they move together.
func PumpSpec(name string, step time.Duration) AssetSpec {
	return AssetSpec{
		Name: name, Step: step,
		LoadPhi: 0.995, LoadSigma: 0.01, ShiftAmp: 0.15, LoadDaily: 0.05,
		Channels: []ChannelSpec{
			{Name: "vibration", Unit: "mm/s", Base: 1.0, LoadGain: 1.5, ARPhi: 0.8, ARSigma: 0.05, Noise: 0.08, HeavyTail: 5},
			{Name: "current", Unit: "A", Base: 10, LoadGain: 25, ARPhi: 0.9, ARSigma: 0.1, Noise: 0.2, Quantum: 0.1},
			{Name: "pressure", Unit: "bar", Base: 2, LoadGain: 4, ARPhi: 0.7, ARSigma: 0.03, Noise: 0.05},
			{Name: "temperature", Unit: "°C", Base: 35, LoadGain: 15, Daily: 2, ARPhi: 0.99, ARSigma: 0.05, Noise: 0.1, Quantum: 0.1},
		},
	}
}

// SingleSpec is a lone sensor of a given character, for univariate
// evaluation: "smooth" (slow AR, daily pattern), "noisy" (heavy-tailed
// white noise), "quantised" (coarse resolution, frequent repeats) or
// "wander" (near random-walk level).
func SingleSpec(name, character string, step time.Duration) AssetSpec {
	c := ChannelSpec{Name: name, Base: 50, ARPhi: 0.95, ARSigma: 0.3, Noise: 0.2, Daily: 3}
	switch character {
	case "noisy":
		c = ChannelSpec{Name: name, Base: 20, ARPhi: 0.3, ARSigma: 0.2, Noise: 1, HeavyTail: 3, Daily: 0.5}
	case "quantised":
		c = ChannelSpec{Name: name, Base: 70, ARPhi: 0.97, ARSigma: 0.15, Noise: 0.1, Quantum: 0.5, Daily: 2}
	case "wander":
		c = ChannelSpec{Name: name, Base: 100, ARPhi: 0.999, ARSigma: 0.2, Noise: 0.3}
	}
	return AssetSpec{Name: name, Step: step, LoadPhi: 0.99, LoadSigma: 0.01, Channels: []ChannelSpec{c}}
}

// Generator produces the rows of one asset.
type Generator struct {
	spec AssetSpec
	rng  *rand.Rand
	t    time.Time
	load float64
	ar   []float64
	i    int
}

// NewGenerator starts an asset's signal at start.
func NewGenerator(spec AssetSpec, rng *rand.Rand, start time.Time) *Generator {
	return &Generator{spec: spec, rng: rng, t: start.UTC(), ar: make([]float64, len(spec.Channels))}
}

// Spec returns the asset's spec.
func (g *Generator) Spec() AssetSpec { return g.spec }

func (g *Generator) noise(heavy float64) float64 {
	if heavy <= 0 {
		return g.rng.NormFloat64()
	}
	// Student-t via normal / sqrt(chi²/ν), scaled to unit variance.
	chi := 0.0
	nu := int(math.Max(heavy, 1))
	for i := 0; i < nu; i++ {
		z := g.rng.NormFloat64()
		chi += z * z
	}
	t := g.rng.NormFloat64() / math.Sqrt(chi/float64(nu))
	if heavy > 2 {
		t *= math.Sqrt((heavy - 2) / heavy)
	}
	return t
}

// Next fills row (len ≥ channels) with the next sample and returns its time.
func (g *Generator) Next(row []float64) time.Time {
	s := &g.spec
	t := g.t
	hour := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
	g.load = s.LoadPhi*g.load + s.LoadSigma*g.rng.NormFloat64()
	load := 1 + g.load + s.LoadDaily*math.Sin(2*math.Pi*(hour-8)/24)
	load += s.ShiftAmp * shiftLevel(hour)
	for i, c := range s.Channels {
		g.ar[i] = c.ARPhi*g.ar[i] + c.ARSigma*g.rng.NormFloat64()
		v := c.Base + c.LoadGain*(load-1) + c.Daily*math.Sin(2*math.Pi*(hour-14)/24) + g.ar[i] + c.Noise*g.noise(c.HeavyTail)
		if c.Quantum > 0 {
			v = math.Round(v/c.Quantum) * c.Quantum
		}
		row[i] = v
	}
	g.t = t.Add(s.Step)
	g.i++
	return t
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// shiftLevel is 1 during the day shift and 0 at night, with half-hour
// ramps starting at 06:00 and 22:00.
func shiftLevel(hour float64) float64 {
	switch {
	case hour < 6 || hour >= 22.5:
		return 0
	case hour < 6.5:
		return (hour - 6) / 0.5
	case hour < 22:
		return 1
	}
	return 1 - (hour-22)/0.5
}
