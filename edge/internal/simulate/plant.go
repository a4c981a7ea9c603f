// Package simulate is the plant gateway simulator behind `sm-edge
// simulate`. It publishes readings of many pump assets to an MQTT broker,
// one JSON reading per topic, in the layout the example site config maps
// (firmware-configs/sites/example-site.yaml):
//
//	plant/{site}/{line}/{asset}/{sensor}  {"v":3.217,"ts":1764151200123,"q":"good"}
//
// Each asset has seven correlated sensors (vib_x, vib_y, vib_z, current_l1,
// pressure_discharge, flow, bearing_de_temp) driven by one load process
// with day-shift and daily patterns and each sensor's own AR(1)
// disturbance and noise. The signal and fault models are those of
// models/eval (Generator, Injector, RandomFaults), so the simulator and
// the detection-quality evaluation share one definition of "normal" and
// of every fault kind. Faults come from a schedule (ParseFault) or at
// random from a seed; what was injected is written as ground truth.
//
// Timestamps are the sample times t0 + k/rate (epoch milliseconds, or
// microseconds when the period is not a whole millisecond), so readings of
// one sensor never share a timestamp and a run with a fixed --start and
// --seed publishes the same data every time.
package simulate

import (
	"math/rand/v2"
	"time"

	"github.com/smartmaint/smartmaint/models/eval"
)

// Sensor names of a simulated pump, in channel order. Bearing wear
// (eval.BearingWear) acts on channel 0 and the last channel (models/eval's
// fallback when no channel is named "vibration"/"temperature"), so vib_x
// comes first and bearing_de_temp last.
var sensorNames = [...]string{"vib_x", "vib_y", "vib_z", "current_l1", "pressure_discharge", "flow", "bearing_de_temp"}

// SensorNames returns the sensor names of every simulated asset.
func SensorNames() []string { return append([]string(nil), sensorNames[:]...) }

// AssetName is the name of asset i (0-based): pump1, pump2, …
func AssetName(i int) string { return "pump" + itoa(i+1) }

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			break
		}
	}
	return string(b[n:])
}

// pumpSpec is a centrifugal pump with a 30 kW motor, sized to sit inside
// the normal range of the firmware-configs profiles each sensor maps to
// (triaxial_vibration, motor_current, pressure_transmitter, flow_meter,
// bearing_temperature). scale varies the operating point between assets.
func pumpSpec(name string, step time.Duration, rng *rand.Rand) eval.AssetSpec {
	s := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
	duty := s(0.8, 1.2)
	return eval.AssetSpec{
		Name: name, Step: step,
		LoadPhi: 0.995, LoadSigma: 0.01, ShiftAmp: 0.15, LoadDaily: 0.05,
		Channels: []eval.ChannelSpec{
			{Name: "vib_x", Unit: "mm/s", Base: 1.2 * s(0.8, 1.2), LoadGain: 1.5, ARPhi: 0.8, ARSigma: 0.05, Noise: 0.08, HeavyTail: 5},
			{Name: "vib_y", Unit: "mm/s", Base: 1.0 * s(0.8, 1.2), LoadGain: 1.3, ARPhi: 0.8, ARSigma: 0.05, Noise: 0.08, HeavyTail: 5},
			{Name: "vib_z", Unit: "mm/s", Base: 0.7 * s(0.8, 1.2), LoadGain: 0.8, ARPhi: 0.8, ARSigma: 0.04, Noise: 0.06, HeavyTail: 5},
			{Name: "current_l1", Unit: "A", Base: 32 * duty, LoadGain: 25, ARPhi: 0.9, ARSigma: 0.1, Noise: 0.2, Quantum: 0.1},
			{Name: "pressure_discharge", Unit: "bar", Base: 5.5 * duty, LoadGain: 4, ARPhi: 0.7, ARSigma: 0.03, Noise: 0.05, Quantum: 0.01},
			{Name: "flow", Unit: "m3/h", Base: 150 * duty, LoadGain: 90, ARPhi: 0.8, ARSigma: 0.8, Noise: 1.5, Quantum: 0.1},
			{Name: "bearing_de_temp", Unit: "degC", Base: 48 * s(0.9, 1.1), LoadGain: 15, Daily: 2, ARPhi: 0.99, ARSigma: 0.05, Noise: 0.1, Quantum: 0.1},
		},
	}
}
