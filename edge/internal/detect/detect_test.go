package detect

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// sink is the next stage: it records what it is handed, in order.
type sink struct {
	mu     sync.Mutex
	rs     []wire.Reading
	es     []wire.Event
	order  []string
	failRs error
}

func (s *sink) Write(_ context.Context, rs []wire.Reading) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failRs != nil {
		return s.failRs
	}
	s.rs = append(s.rs, rs...)
	s.order = append(s.order, "readings")
	return nil
}

func (s *sink) WriteEvents(_ context.Context, es []wire.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.es = append(s.es, es...)
	s.order = append(s.order, "events")
	return nil
}

// scripted is a detector whose scores are the reading values themselves
// (clipped to [0,1]): tests drive scores directly.
type scripted struct{}

func (scripted) Update(_ int64, v float64) float64 { return min(max(v, 0), 1) }
func (scripted) Threshold() float64                { return 0.5 }

func scriptedSet(ref string) *ModelSet {
	return &ModelSet{Default: &models.Built{Ref: ref, Kind: "scripted", Threshold: 0.5, NewSensor: func() models.Detector { return scripted{} }}}
}

type profiles map[string]Profile

func (p profiles) Lookup(s string) (Profile, bool) { x, ok := p[s]; return x, ok }

const sec = int64(1e9)

func readings(sensor string, vals ...float64) []wire.Reading {
	rs := make([]wire.Reading, len(vals))
	for i, v := range vals {
		rs[i] = wire.Reading{Sensor: sensor, Time: int64(i+1) * sec, Value: v}
	}
	return rs
}

func TestOscillatingScoreRaisesOnce(t *testing.T) {
	next := &sink{}
	reg := prometheus.NewPedanticRegistry()
	met, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := New(next, profiles{"p1/vib": {Asset: "p1"}}, scriptedSet("s@1"), DefaultEventConfig(), met)
	if err != nil {
		t.Fatal(err)
	}
	// Around the threshold: above for 3, then oscillating 0.45/0.55 (never
	// below 0.7·0.5 long enough), then clearly low.
	vals := []float64{0.1, 0.6, 0.6, 0.6}
	for i := 0; i < 40; i++ {
		vals = append(vals, 0.45+0.1*float64(i%2))
	}
	vals = append(vals, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
	in := readings("p1/vib", vals...)
	orig := append([]wire.Reading(nil), in...)
	if err := st.Write(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(orig, in); diff != "" {
		t.Fatalf("Write modified its input:\n%s", diff)
	}
	type ev struct {
		State             wire.EventState
		Time, Start       int64
		Sensor, Asset, Md string
	}
	var got []ev
	for _, e := range next.es {
		got = append(got, ev{e.State, e.Time, e.WindowStart, e.Sensor, e.Asset, e.Model})
	}
	want := []ev{
		{wire.EventRaised, 4 * sec, 2 * sec, "p1/vib", "p1", "s@1"},
		{wire.EventCleared, 49 * sec, 2 * sec, "p1/vib", "p1", "s@1"}, // the window spans the whole condition
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if sc, an := st.Models().Stats(); sc != uint64(len(vals)) || an != 23 {
		t.Errorf("set stats: %d scored, %d anomalous; want %d, 23", sc, an, len(vals))
	}
	if got := testutil.ToFloat64(met.anomalies); got != 23 {
		t.Errorf("anomalous readings metric %v, want 23", got)
	}
	if got := testutil.ToFloat64(met.events.WithLabelValues("anomaly", "raised")); got != 1 {
		t.Errorf("raised events metric %v, want 1", got)
	}
	if diff := cmp.Diff([]string{"events", "readings"}, next.order); diff != "" {
		t.Errorf("events must be handed on before readings:\n%s", diff)
	}
	if len(next.rs) != len(vals) {
		t.Fatalf("%d readings passed on, want %d", len(next.rs), len(vals))
	}
	for i, r := range next.rs {
		anom := r.Flags&wire.FlagAnomaly != 0
		if r.Model != "s@1" || r.Score != float32(min(max(vals[i], 0), 1)) || anom != (vals[i] >= 0.5) {
			t.Fatalf("reading %d: %+v", i, r)
		}
	}
}

func TestStrongSpikeRaisesImmediately(t *testing.T) {
	next := &sink{}
	st, _ := New(next, nil, scriptedSet("s@1"), DefaultEventConfig(), nil)
	_ = st.Write(context.Background(), readings("x", 0.1, 0.95, 0.1, 0.1, 0.1, 0.1, 0.1))
	if len(next.es) != 2 || next.es[0].State != wire.EventRaised || next.es[0].Severity != wire.SeverityMajor || next.es[1].State != wire.EventCleared {
		t.Fatalf("events %+v", next.es)
	}
}

func TestLimitEventsWithDeadband(t *testing.T) {
	h, hh := 80.0, 100.0
	prof := profiles{"p1/temp": {Asset: "p1", Limits: models.LimitsConfig{H: &h, HH: &hh, Deadband: 2, MinDuration: 2 * sec}}}
	next := &sink{}
	st, _ := New(next, prof, scriptedSet("s@1"), DefaultEventConfig(), nil)
	// Hovers around H without staying above it for the minimum duration
	// (no alarm), then stays above (H), dips into the deadband (holds),
	// escalates to HH, returns to H's band and then to normal.
	vals := []float64{70, 81, 79, 81, 80.5, 79.5, 81, 79, 85, 85, 85, 79, 105, 105, 105, 99, 97, 60}
	_ = st.Write(context.Background(), readings("p1/temp", vals...))
	type ev struct {
		State wire.EventState
		Rule  string
		Sev   wire.Severity
		Time  int64
	}
	var got []ev
	for _, e := range next.es {
		if e.Kind == wire.EventLimit {
			got = append(got, ev{e.State, e.Rule, e.Severity, e.Time})
		}
	}
	want := []ev{
		{wire.EventRaised, "H", wire.SeverityMajor, 11 * sec},
		{wire.EventCleared, "H", wire.SeverityMajor, 15 * sec},
		{wire.EventRaised, "HH", wire.SeverityCritical, 15 * sec},
		{wire.EventCleared, "HH", wire.SeverityCritical, 17 * sec},
		{wire.EventRaised, "H", wire.SeverityMajor, 17 * sec},
		{wire.EventCleared, "H", wire.SeverityMajor, 18 * sec},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("limit events (-want +got):\n%s", diff)
	}
	for i, r := range next.rs {
		lim := r.Flags&wire.FlagLimit != 0
		if wantLim := i >= 10 && i <= 16; lim != wantLim {
			t.Errorf("reading %d (%v): FlagLimit %v, want %v", i, vals[i], lim, wantLim)
		}
	}
}

func TestModelSwapUnderLoadDropsNothing(t *testing.T) {
	next := &sink{}
	st, _ := New(next, nil, scriptedSet("a@1"), DefaultEventConfig(), nil)
	var wg sync.WaitGroup
	const writers, batches, per = 4, 200, 10
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				rs := make([]wire.Reading, per)
				for i := range rs {
					rs[i] = wire.Reading{Sensor: fmt.Sprintf("s%d", i), Time: int64(b*per + i), Value: 0.1}
				}
				if err := st.Write(context.Background(), rs); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		ref := fmt.Sprintf("m@%d", i)
		if err := st.SetModels(scriptedSet(ref)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	_ = st.SetModels(scriptedSet("final@1"))
	_ = st.Write(context.Background(), readings("s0", 0.2))
	next.mu.Lock()
	defer next.mu.Unlock()
	if got, want := len(next.rs), writers*batches*per+1; got != want {
		t.Fatalf("%d readings passed on, want %d", got, want)
	}
	for _, r := range next.rs {
		if r.Model == "" {
			t.Fatalf("unscored reading %+v", r)
		}
	}
	if last := next.rs[len(next.rs)-1]; last.Model != "final@1" {
		t.Errorf("after swap scored by %q", last.Model)
	}
}

func TestSetModelsRejectsBadSets(t *testing.T) {
	st, _ := New(&sink{}, nil, scriptedSet("a@1"), DefaultEventConfig(), nil)
	bad := scriptedSet("b@1")
	bad.Assets = []AssetGroup{{Name: "x", Sensors: []string{"a", "b"}}, {Name: "y", Sensors: []string{"b"}}}
	if err := st.SetModels(bad); err == nil {
		t.Error("sensor in two groups accepted")
	}
	if err := st.SetModels(&ModelSet{}); err == nil {
		t.Error("set without default accepted")
	}
	if st.Models().Default.Ref != "a@1" {
		t.Error("a rejected set replaced the current one")
	}
}

func TestAssetRowsAcrossBatches(t *testing.T) {
	set, _ := Builtin(models.NameEnsemble)
	set.Assets = []AssetGroup{{Name: "pump", Sensors: []string{"a", "b"}}}
	next := &sink{}
	st, _ := New(next, nil, set, DefaultEventConfig(), nil)
	ctx := context.Background()
	// One row in one batch: both readings get the row's score.
	_ = st.Write(ctx, []wire.Reading{{Sensor: "a", Time: 1, Value: 1}, {Sensor: "b", Time: 1, Value: 2}})
	// A row split over two batches: the completing reading gets it.
	_ = st.Write(ctx, []wire.Reading{{Sensor: "a", Time: 2, Value: 1}})
	_ = st.Write(ctx, []wire.Reading{{Sensor: "b", Time: 2, Value: 2}})
	// b misses a row: a newer timestamp completes the row with b's last value.
	_ = st.Write(ctx, []wire.Reading{{Sensor: "a", Time: 3, Value: 1}, {Sensor: "a", Time: 4, Value: 1}, {Sensor: "b", Time: 4, Value: 2}})
	var models_ []string
	for _, r := range next.rs {
		models_ = append(models_, r.Model)
	}
	want := []string{"ensemble@builtin", "ensemble@builtin", "", "ensemble@builtin", "ensemble@builtin", "ensemble@builtin", "ensemble@builtin"}
	if diff := cmp.Diff(want, models_); diff != "" {
		t.Errorf("which readings carry the asset score (-want +got):\n%s", diff)
	}
}

func TestWriteErrorIsReturned(t *testing.T) {
	next := &sink{failRs: fmt.Errorf("disk full")}
	st, _ := New(next, nil, scriptedSet("a@1"), DefaultEventConfig(), nil)
	if err := st.Write(context.Background(), readings("x", 0.1)); err == nil {
		t.Fatal("error from the next stage swallowed")
	}
}

func TestBuildSet(t *testing.T) {
	row := &models.Built{Ref: "pca@1", Kind: "pca", Sensors: []string{"p/a", "p/b"}, Threshold: 0.5,
		NewRow: func() models.RowDetector { return nil }}
	uni := &models.Built{Ref: "ewma@2", Kind: "ewma", Sensors: []string{"p/c"}, Threshold: 0.5, NewSensor: func() models.Detector { return scripted{} }}
	all := &models.Built{Ref: "mad@3", Kind: "mad", Threshold: 0.5, NewSensor: func() models.Detector { return scripted{} }}
	set, err := BuildSet([]*models.Built{row, uni, all})
	if err != nil {
		t.Fatal(err)
	}
	if set.Default.Ref != "mad@3" || set.BySensor["p/c"].Ref != "ewma@2" || len(set.Assets) != 1 || !set.Assets[0].RowOnly {
		t.Errorf("set %+v", set)
	}
	if _, err := BuildSet([]*models.Built{all, all}); err == nil {
		t.Error("two defaults accepted")
	}
	if _, err := BuildSet([]*models.Built{uni, uni}); err == nil {
		t.Error("a sensor with two models accepted")
	}
	def, err := BuildSet(nil)
	if err != nil || def.Default.Ref != "ensemble@builtin" {
		t.Errorf("empty set: %v %v", def, err)
	}
}

// TestMatchChoosesTargetedModels: a model set's Match hook picks the model
// for sensors that BySensor does not name, ahead of the default.
func TestMatchChoosesTargetedModels(t *testing.T) {
	set := scriptedSet("default@1")
	listed := &models.Built{Ref: "listed@1", Kind: "scripted", Threshold: 0.5, NewSensor: func() models.Detector { return scripted{} }}
	vib := &models.Built{Ref: "vib@2", Kind: "scripted", Threshold: 0.5, NewSensor: func() models.Detector { return scripted{} }}
	set.BySensor = map[string]*models.Built{"p1/vib_x": listed}
	set.Match = func(sensor string) *models.Built {
		if len(sensor) > 6 && sensor[3:6] == "vib" {
			return vib
		}
		return nil
	}
	next := &sink{}
	st, err := New(next, nil, set, DefaultEventConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"p1/vib_x", "p1/vib_y", "p1/temp"} {
		if err := st.Write(context.Background(), readings(s, 0.1)); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	for _, r := range next.rs {
		got[r.Sensor] = r.Model
	}
	want := map[string]string{"p1/vib_x": "listed@1", "p1/vib_y": "vib@2", "p1/temp": "default@1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("models by sensor (-want +got):\n%s", diff)
	}
}
