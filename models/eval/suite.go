package eval

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/models"
)

// SuiteStart is the first timestamp of the standard suite (a Monday).
const SuiteStart = int64(1767571200) * int64(time.Second) // 2026-01-05T00:00:00Z

// StandardSuite is the labelled evaluation set reported in QUALITY.md:
// pumps (four correlated channels) and lone sensors of four characters,
// one week each at one-minute sampling, the first day fault-free for
// training, then faults of every kind at random places.
func StandardSuite(seed uint64) []Dataset {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	const n, train = 7 * 1440, 1440
	var out []Dataset
	all := FaultKinds()
	for i := 0; i < 8; i++ {
		spec := PumpSpec(fmt.Sprintf("pump%d", i+1), time.Minute)
		faults := RandomFaults(rng, spec, n, train, 8, 240, all)
		out = append(out, Generate(spec, rng, SuiteStart, n, train, faults))
	}
	chars := []string{"smooth", "noisy", "quantised", "wander"}
	for i := 0; i < 8; i++ {
		spec := SingleSpec(fmt.Sprintf("sensor%d", i+1), chars[i%len(chars)], time.Minute)
		faults := RandomFaults(rng, spec, n, train, 8, 240, []FaultKind{Spike, Step, Drift, Stuck, NoiseBurst, Dropout})
		out = append(out, Generate(spec, rng, SuiteStart, n, train, faults))
	}
	return out
}

// Candidate builds the scorer under test for one dataset; nil means the
// detector does not apply (e.g. PCA on one channel).
type Candidate struct {
	Name  string
	Build func(d Dataset) (*models.Asset, error)
}

// Univariate returns a candidate running the named built-in on every
// channel.
func Univariate(name string) Candidate {
	return Candidate{Name: name, Build: func(d Dataset) (*models.Asset, error) {
		var ds []models.Detector
		for range d.Spec.Channels {
			x, err := models.New(name)
			if err != nil {
				return nil, err
			}
			ds = append(ds, x)
		}
		return models.NewAsset(ds, nil, ds[0].Threshold()), nil
	}}
}

// Candidates are the detectors reported in QUALITY.md.
func Candidates() []Candidate {
	cs := []Candidate{}
	for _, n := range []string{models.NameEWMA, models.NameMAD, models.NameSpike, models.NameSpread, models.NameCUSUM, models.NameStuck} {
		cs = append(cs, Univariate(n))
	}
	cs = append(cs, Candidate{Name: "limits (training range ± 2σ)", Build: func(d Dataset) (*models.Asset, error) {
		var ds []models.Detector
		for c := range d.Spec.Channels {
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, r := range d.Rows[:d.TrainRows] {
				if !math.IsNaN(r[c]) {
					lo, hi = math.Min(lo, r[c]), math.Max(hi, r[c])
				}
			}
			sig := d.Spec.Channels[c].Sigma()
			h, l := hi+2*sig, lo-2*sig
			ds = append(ds, models.NewLimits(models.LimitsConfig{H: &h, L: &l, Deadband: sig}))
		}
		return models.NewAsset(ds, nil, 0.5), nil
	}})
	cs = append(cs, Candidate{Name: "pca (trained on day 1)", Build: func(d Dataset) (*models.Asset, error) {
		if len(d.Spec.Channels) < 2 {
			return nil, nil
		}
		p, err := models.TrainPCA(d.Rows[:d.TrainRows], models.DefaultPCAConfig())
		if err != nil {
			return nil, err
		}
		return models.NewAsset(nil, p, p.Threshold()), nil
	}})
	cs = append(cs, Candidate{Name: "ensemble (default, no training)", Build: func(d Dataset) (*models.Asset, error) {
		return DefaultAsset(len(d.Spec.Channels), d.TrainRows), nil
	}})
	return cs
}

// DefaultAsset is the default ensemble for an asset of width channels: the
// ensemble on every channel and, with two or more channels, an online PCA
// fitted on the first warmup rows (at least 500). `sm-edge score` builds
// the same.
func DefaultAsset(width, warmup int) *models.Asset {
	return EnsembleAt(width, warmup, models.DefaultThreshold)
}

// DefaultOptions are the matching rules of QUALITY.md at one-minute
// sampling: an alarm up to an hour after a fault's end still counts, and
// alarms less than ten minutes apart are one event.
func DefaultOptions(d Dataset) Options {
	return Options{Tolerance: 60, MergeGap: 10, From: d.TrainRows, Sensors: len(d.Spec.Channels)}
}

// Run scores a dataset with a and returns the alarm of every row.
func Run(a *models.Asset, d Dataset) []bool {
	alarm := make([]bool, len(d.Rows))
	thr := a.Threshold()
	for i, r := range d.Rows {
		alarm[i] = a.Update(d.Times[i], r) >= thr
	}
	return alarm
}

// KindRecall counts, per fault kind, detected and total faults.
type KindRecall map[FaultKind][2]int

func kindRecall(kr KindRecall, d Dataset, alarm []bool, o Options) {
	for _, f := range d.Faults {
		if !f.Kind.Anomalous() {
			continue
		}
		c := kr[f.Kind]
		c[1]++
		for i := f.Start; i < min(f.End()+o.Tolerance, len(alarm)); i++ {
			if alarm[i] {
				c[0]++
				break
			}
		}
		kr[f.Kind] = c
	}
}

// Report evaluates every candidate on the suite and writes the markdown
// tables of QUALITY.md to w.
func Report(w io.Writer, suite []Dataset, cands []Candidate) (map[string]Result, error) {
	results := map[string]Result{}
	recalls := map[string]KindRecall{}
	var names []string
	for _, c := range cands {
		var tot Result
		kr := KindRecall{}
		applied := 0
		for _, d := range suite {
			a, err := c.Build(d)
			if err != nil {
				return nil, fmt.Errorf("%s on %s: %w", c.Name, d.Spec.Name, err)
			}
			if a == nil {
				continue
			}
			applied++
			o := DefaultOptions(d)
			alarm := Run(a, d)
			tot.Add(Evaluate(d.Times, alarm, Windows(d.Faults), o))
			kindRecall(kr, d, alarm, o)
		}
		if applied == 0 {
			continue
		}
		names = append(names, c.Name)
		results[c.Name] = tot
		recalls[c.Name] = kr
	}
	fmt.Fprintf(w, "| detector | faults | detected | recall | alarm events | false | precision | F1 | false alarms / sensor-day | median delay | mean delay |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range names {
		r := results[n]
		fmt.Fprintf(w, "| %s | %d | %d | %.2f | %d | %d | %.2f | %.2f | %.3f | %s | %s |\n",
			n, r.Windows, r.Detected, r.Recall, r.Events, r.FalseEvents, r.Precision, r.F1,
			r.FalsePerSensorDay, delayCell(r, r.MedianDelay()), delayCell(r, r.MeanDelay()))
	}
	fmt.Fprintf(w, "\nRecall by fault kind (detected/injected):\n\n")
	kinds := []FaultKind{}
	for _, k := range FaultKinds() {
		if k.Anomalous() {
			kinds = append(kinds, k)
		}
	}
	hdr := []string{"detector"}
	for _, k := range kinds {
		hdr = append(hdr, k.String())
	}
	fmt.Fprintf(w, "| %s |\n|---%s|\n", strings.Join(hdr, " | "), strings.Repeat("|---:", len(kinds)))
	for _, n := range names {
		cells := []string{n}
		for _, k := range kinds {
			c := recalls[n][k]
			cells = append(cells, fmt.Sprintf("%d/%d", c[0], c[1]))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	return results, nil
}

func fmtDur(d time.Duration) string {
	return d.Round(time.Minute).String()
}

func delayCell(r Result, d time.Duration) string {
	if len(r.Delays) == 0 {
		return "–"
	}
	return fmtDur(d)
}

// EnsembleAt is the default asset scorer with every threshold set to thr.
func EnsembleAt(width, warmup int, thr float64) *models.Asset {
	var ds []models.Detector
	for i := 0; i < width; i++ {
		c := models.DefaultEnsembleConfig()
		c.Threshold = thr
		ds = append(ds, models.NewEnsemble(c))
	}
	var row models.RowDetector
	if width >= 2 {
		c := models.DefaultPCAConfig()
		c.Threshold = thr
		row = models.NewOnlinePCA(width, max(warmup, 500), c)
	}
	return models.NewAsset(ds, row, thr)
}

// Sweep writes the default ensemble's quality across thresholds: the
// measurement models.DefaultThreshold was chosen by.
func Sweep(w io.Writer, suite []Dataset, thresholds []float64) {
	fmt.Fprintf(w, "| threshold | recall | precision | F1 | false alarms / sensor-day | median delay |\n|---:|---:|---:|---:|---:|---:|\n")
	for _, thr := range thresholds {
		var tot Result
		for _, d := range suite {
			tot.Add(Evaluate(d.Times, Run(EnsembleAt(len(d.Spec.Channels), d.TrainRows, thr), d), Windows(d.Faults), DefaultOptions(d)))
		}
		mark := ""
		if thr == models.DefaultThreshold {
			mark = " (default)"
		}
		fmt.Fprintf(w, "| %.2f%s | %.2f | %.2f | %.2f | %.3f | %s |\n", thr, mark, tot.Recall, tot.Precision, tot.F1, tot.FalsePerSensorDay, delayCell(tot, tot.MedianDelay()))
	}
}
