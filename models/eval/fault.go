package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// FaultKind names an injected fault.
type FaultKind uint8

// Fault kinds.
const (
	Spike FaultKind = iota + 1
	Step
	Drift
	Stuck
	NoiseBurst
	// BearingWear grows the vibration channel quadratically and raises the
	// temperature channel linearly over the fault's length.
	BearingWear
	// Dropout replaces values with NaN (missing). It is not an anomaly to
	// detect: detectors must not alarm on it or on the recovery.
	Dropout
)

// FaultKinds lists every kind, in order.
func FaultKinds() []FaultKind {
	return []FaultKind{Spike, Step, Drift, Stuck, NoiseBurst, BearingWear, Dropout}
}

// String returns the kind's name as used in ground-truth files.
func (k FaultKind) String() string {
	switch k {
	case Spike:
		return "spike"
	case Step:
		return "step"
	case Drift:
		return "drift"
	case Stuck:
		return "stuck"
	case NoiseBurst:
		return "noise_burst"
	case BearingWear:
		return "bearing_wear"
	case Dropout:
		return "dropout"
	}
	return fmt.Sprintf("fault(%d)", uint8(k))
}

// ParseFaultKind is the inverse of String.
func ParseFaultKind(s string) (FaultKind, error) {
	for _, k := range FaultKinds() {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown fault kind %q", s)
}

// Anomalous reports whether the fault is an anomaly detectors should flag.
func (k FaultKind) Anomalous() bool { return k != Dropout }

// Fault is one injected fault and its ground truth: rows [Start, Start+Len)
// of channel Channel (ignored for BearingWear, which uses the channels
// named "vibration" and "temperature", or 0 and the last channel).
// Magnitude is in units of the channel's Sigma (for Drift and BearingWear,
// the size reached at the end; for NoiseBurst, the added noise's standard
// deviation).
type Fault struct {
	Kind      FaultKind
	Channel   int
	Start     int
	Len       int
	Magnitude float64
}

// End is the first row after the fault.
func (f Fault) End() int { return f.Start + f.Len }

// Injector applies faults to a stream of rows, row by row, so a live
// simulator and a batch generator share it.
type Injector struct {
	spec   AssetSpec
	faults []Fault
	rng    *rand.Rand
	stuck  []float64
	sigma  []float64
}

// NewInjector prepares faults for an asset. rng (used by noise bursts)
// should not be the generator's, so that faults do not shift the clean
// signal.
func NewInjector(spec AssetSpec, faults []Fault, rng *rand.Rand) *Injector {
	in := &Injector{spec: spec, faults: faults, rng: rng, stuck: make([]float64, len(faults)), sigma: make([]float64, len(spec.Channels))}
	for i, c := range spec.Channels {
		in.sigma[i] = c.Sigma()
	}
	return in
}

// Faults returns the faults (the ground truth).
func (in *Injector) Faults() []Fault { return in.faults }

func (in *Injector) wearChannels() (vib, temp int) {
	vib, temp = in.spec.Channel("vibration"), in.spec.Channel("temperature")
	if vib < 0 {
		vib = 0
	}
	if temp < 0 {
		temp = len(in.spec.Channels) - 1
	}
	return vib, temp
}

// Channels returns the channels fault f affects.
func (in *Injector) Channels(f Fault) []int {
	if f.Kind == BearingWear {
		v, t := in.wearChannels()
		if v == t {
			return []int{v}
		}
		return []int{v, t}
	}
	return []int{f.Channel}
}

// Apply modifies row i in place.
func (in *Injector) Apply(i int, row []float64) {
	for k, f := range in.faults {
		if i < f.Start || i >= f.End() {
			continue
		}
		c := f.Channel
		if c < 0 || c >= len(row) {
			continue
		}
		sig := in.sigma[c]
		frac := float64(i-f.Start+1) / float64(f.Len)
		switch f.Kind {
		case Spike:
			row[c] += f.Magnitude * sig
		case Step:
			row[c] += f.Magnitude * sig
		case Drift:
			row[c] += f.Magnitude * sig * frac
		case Stuck:
			if i == f.Start {
				in.stuck[k] = row[c]
			}
			row[c] = in.stuck[k]
		case NoiseBurst:
			row[c] += f.Magnitude * sig * in.rng.NormFloat64()
		case BearingWear:
			v, t := in.wearChannels()
			row[v] += f.Magnitude * in.sigma[v] * frac * frac
			if t != v {
				row[t] += 0.5 * f.Magnitude * in.sigma[t] * frac
			}
		case Dropout:
			row[c] = math.NaN()
		}
	}
}

// Dataset is a labelled series of one asset.
type Dataset struct {
	Spec   AssetSpec
	Times  []int64 // Unix ns
	Rows   [][]float64
	Faults []Fault
	// TrainRows at the start are fault-free and meant for fitting.
	TrainRows int
}

// Generate produces n rows of spec starting at start with faults applied.
func Generate(spec AssetSpec, rng *rand.Rand, start int64, n, trainRows int, faults []Fault) Dataset {
	// The injector draws from its own stream, so adding a fault never
	// changes the clean signal around it.
	injRng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	g := NewGenerator(spec, rng, unixTime(start))
	in := NewInjector(spec, faults, injRng)
	d := Dataset{Spec: spec, Faults: faults, TrainRows: trainRows, Times: make([]int64, n), Rows: make([][]float64, n)}
	for i := 0; i < n; i++ {
		row := make([]float64, len(spec.Channels))
		d.Times[i] = g.Next(row).UnixNano()
		in.Apply(i, row)
		d.Rows[i] = row
	}
	return d
}

// RandomFaults places count non-overlapping faults after trainRows in n
// rows, cycling through kinds, with a quiet gap of at least gap rows
// between them and magnitudes typical of each kind.
func RandomFaults(rng *rand.Rand, spec AssetSpec, n, trainRows, count, gap int, kinds []FaultKind) []Fault {
	var out []Fault
	if count <= 0 || len(kinds) == 0 {
		return nil
	}
	slot := (n - trainRows) / count
	for i := 0; i < count; i++ {
		k := kinds[(i+rng.IntN(len(kinds)))%len(kinds)]
		f := Fault{Kind: k, Channel: rng.IntN(len(spec.Channels))}
		switch k {
		case Spike:
			f.Len, f.Magnitude = 1, sign(rng)*(6+4*rng.Float64())
		case Step:
			f.Len, f.Magnitude = 120+rng.IntN(240), sign(rng)*(3+2*rng.Float64())
		case Drift:
			f.Len, f.Magnitude = 240+rng.IntN(480), sign(rng)*(4+3*rng.Float64())
		case Stuck:
			f.Len, f.Magnitude = 60+rng.IntN(240), 0
		case NoiseBurst:
			f.Len, f.Magnitude = 30+rng.IntN(90), 3+2*rng.Float64()
		case BearingWear:
			f.Len, f.Magnitude = 480+rng.IntN(480), 6+4*rng.Float64()
		case Dropout:
			f.Len = 10 + rng.IntN(60)
		}
		lo := trainRows + i*slot + gap/2
		hi := trainRows + (i+1)*slot - gap/2 - f.Len
		if hi <= lo {
			continue
		}
		f.Start = lo + rng.IntN(hi-lo)
		out = append(out, f)
	}
	return out
}

func sign(rng *rand.Rand) float64 {
	if rng.IntN(2) == 0 {
		return -1
	}
	return 1
}
