package eval

import (
	"sort"
	"time"
)

// Window is a labelled anomaly: rows [Start, End).
type Window struct {
	Start, End int
}

// Windows returns the anomaly windows of faults (dropouts excluded),
// merged where they overlap.
func Windows(faults []Fault) []Window {
	var ws []Window
	for _, f := range faults {
		if f.Kind.Anomalous() {
			ws = append(ws, Window{f.Start, f.End()})
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Start < ws[j].Start })
	var out []Window
	for _, w := range ws {
		if n := len(out); n > 0 && w.Start <= out[n-1].End {
			if w.End > out[n-1].End {
				out[n-1].End = w.End
			}
			continue
		}
		out = append(out, w)
	}
	return out
}

// Options set how alarms are matched to windows.
type Options struct {
	// Tolerance rows after a window's end in which an alarm still counts
	// as detecting it (detectors may lag, e.g. a step's return).
	Tolerance int
	// MergeGap joins alarms separated by at most this many quiet rows into
	// one alarm event, as an operator would see one incident.
	MergeGap int
	// From is the first evaluated row (rows before it are training or
	// probation and ignored).
	From int
	// Sensors is the number of sensors the alarms stand for, to normalise
	// false alarms per sensor-day.
	Sensors int
}

// Result is the event-wise detection quality of one run.
type Result struct {
	Windows, Detected   int
	Events, FalseEvents int
	Precision, Recall   float64
	F1                  float64
	// FalsePerSensorDay is false alarm events per sensor per day.
	FalsePerSensorDay float64
	// Delays of detected windows (first alarm − window start).
	Delays    []time.Duration
	Days      float64
	Sensors   int
	Evaluated int
}

// Add accumulates r into the receiver (for totals over datasets).
func (r *Result) Add(o Result) {
	r.Windows += o.Windows
	r.Detected += o.Detected
	r.Events += o.Events
	r.FalseEvents += o.FalseEvents
	r.Delays = append(r.Delays, o.Delays...)
	r.Days += o.Days * float64(o.Sensors)
	r.Sensors = 1
	r.finish()
}

func (r *Result) finish() {
	r.Precision, r.Recall, r.F1 = 1, 0, 0
	if r.Events > 0 {
		r.Precision = float64(r.Events-r.FalseEvents) / float64(r.Events)
	}
	if r.Windows > 0 {
		r.Recall = float64(r.Detected) / float64(r.Windows)
	}
	if r.Precision+r.Recall > 0 {
		r.F1 = 2 * r.Precision * r.Recall / (r.Precision + r.Recall)
	}
	if d := r.Days * float64(max(r.Sensors, 1)); d > 0 {
		r.FalsePerSensorDay = float64(r.FalseEvents) / d
	}
}

// MedianDelay is the median detection delay (0 when nothing detected).
func (r *Result) MedianDelay() time.Duration {
	if len(r.Delays) == 0 {
		return 0
	}
	d := append([]time.Duration(nil), r.Delays...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// MeanDelay is the mean detection delay.
func (r *Result) MeanDelay() time.Duration {
	if len(r.Delays) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range r.Delays {
		s += d
	}
	return s / time.Duration(len(r.Delays))
}

// Evaluate matches alarm rows (alarm[i] for the row at times[i]) with
// labelled windows. A window is detected when an alarm falls in
// [Start, End+Tolerance); an alarm event (a run of alarms, merged across
// gaps of at most MergeGap rows) is false when it overlaps no such span.
func Evaluate(times []int64, alarm []bool, windows []Window, o Options) Result {
	n := len(alarm)
	from := min(max(o.From, 0), n)
	r := Result{Sensors: max(o.Sensors, 1), Evaluated: n - from}
	if n-from > 1 {
		step := float64(times[n-1]-times[from]) / float64(n-1-from)
		r.Days = step * float64(n-from) / float64(24*time.Hour)
	}
	inWin := make([]bool, n)
	for _, w := range windows {
		if w.End <= from {
			continue
		}
		r.Windows++
		end := min(w.End+o.Tolerance, n)
		for i := max(w.Start, 0); i < end; i++ {
			inWin[i] = true
		}
		for i := max(w.Start, from); i < end; i++ {
			if alarm[i] {
				r.Detected++
				r.Delays = append(r.Delays, time.Duration(times[i]-times[max(w.Start, 0)]))
				break
			}
		}
	}
	for i := from; i < n; {
		if !alarm[i] {
			i++
			continue
		}
		// One event: alarms joined across gaps ≤ MergeGap.
		hit := false
		j := i
		last := i
		for j < n && j-last <= o.MergeGap+1 {
			if alarm[j] {
				last = j
				if inWin[j] {
					hit = true
				}
			}
			j++
		}
		r.Events++
		if !hit {
			r.FalseEvents++
		}
		i = last + 1
	}
	r.finish()
	return r
}
