package detect

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// plantEvents runs the normal plant (no fault) for seeds 1..seeds and
// counts the events raised: in the first five minutes, in total, and by
// sensor kind and the ensemble component that scored highest on the
// reading that raised the event (the event itself carries only the
// ensemble's combined score).
func plantEvents(t *testing.T, seeds, secs int) (early, total int, byKind, byComp map[string]int) {
	t.Helper()
	byKind, byComp = map[string]int{}, map[string]int{}
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		runPlantProbe(t, seed, secs, nil, func(st *Stage, e wire.Event) {
			if e.State != wire.EventRaised {
				return
			}
			kind := e.Sensor[strings.LastIndex(e.Sensor, "/")+1:]
			comp, detail := "?", ""
			if ss := st.sensors[e.Sensor]; ss != nil {
				if en, ok := ss.det.(*models.Ensemble); ok {
					names, scores := en.Components()
					best := -1.0
					for i, sc := range scores {
						detail += fmt.Sprintf(" %s=%.2f", names[i], sc)
						if sc > best {
							best, comp = sc, names[i]
						}
					}
				}
			}
			sec := plantSecond(e.Time)
			if sec < 300 {
				early++
			}
			total++
			byKind[kind]++
			byComp[kind+"/"+comp]++
			t.Logf("seed %d: %s raised at %ds (score %.2f, value %.2f):%s", seed, e.Sensor, sec, e.Score, e.Value, detail)
		})
	}
	return early, total, byKind, byComp
}

// A fresh edge must be quiet on normal data: users hate alarm storms at
// commissioning. 20 seeds × the demo's 35 sensors (5 pumps × 7) × 1 h at
// 1 Hz from a fresh stage with the default scoring.
//
// Measured before the level detector calibrated its tail
// (models.MADConfig.MinTail): 12 events in the first five minutes (8 of
// them from the level detector on the bearing temperature and the motor
// current, whose short-window z-scores on a slow, smooth signal are far
// wider than the normal prior of the calibration), 83 in the 20 hours, 13
// of them on the bearing temperature. After: 2 in the first five minutes
// (spike detector on heavy-tailed vibration), 66 in total, 2 on the
// bearing temperature. What remains is mostly the spread detector on the
// heavy-tailed vibration channels in steady state (41 of 66), which
// this test documents but does not hold at zero.
func TestFreshPlantIsQuiet(t *testing.T) {
	const seeds, secs = 20, 3600
	early, total, byKind, byComp := plantEvents(t, seeds, secs)
	keys := make([]string, 0, len(byComp))
	for k := range byComp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%s: %d", k, byComp[k])
	}
	t.Logf("%d seeds × 35 sensors × %ds: %d events in the first 5 min, %d in total", seeds, secs, early, total)
	if early > 4 {
		t.Errorf("%d events in the first five minutes of %d fresh plants, want ≤ 4", early, seeds)
	}
	if n := byKind["bearing_de_temp"]; n > 4 {
		t.Errorf("%d events on the (slow, smooth) bearing temperature in %d plant-hours, want ≤ 4", n, seeds)
	}
	if total > 75 {
		t.Errorf("%d events in %d plant-hours (35 sensors), want ≤ 75", total, seeds)
	}
}
