package train

import (
	"bytes"
	"crypto/ed25519"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
)

func TestTrainPublishLoad(t *testing.T) {
	rows := correlated(5, 2000)
	times := make([]int64, len(rows))
	for i := range times {
		times[i] = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute).UnixNano()
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	trusted := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	for _, kind := range append([]string{models.NamePCA}, models.Builtins()...) {
		t.Run(kind, func(t *testing.T) {
			m, err := Fit(rows, Options{Kind: kind, Name: "pump7-" + kind, Version: "v1", Sensors: []string{"a", "b", "c"},
				Times: times, Source: "test", Now: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)})
			if err != nil {
				t.Fatal(err)
			}
			// CUSUM is exempt: on this near-random-walk load (φ = 0.99) the
			// level really does change, and reporting it is its job.
			if rate := m.Training.Metrics["train_alarm_rate"]; rate > 0.01 && kind != models.NameCUSUM {
				t.Errorf("flags %.3f of its own normal training data", rate)
			}
			if !m.Training.From.Equal(time.Unix(0, times[0]).UTC()) || m.Training.Rows != len(rows) {
				t.Errorf("training window %+v", m.Training)
			}
			data, err := artifact.Encode(m, key)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := artifact.Decode(data, trusted)
			if err != nil {
				t.Fatal(err)
			}
			b, err := models.FromArtifact(got)
			if err != nil {
				t.Fatal(err)
			}
			if b.Ref != "pump7-"+kind+"@v1" {
				t.Errorf("ref %q", b.Ref)
			}
			if kind == models.NamePCA {
				d := b.NewRow()
				if d.Width() != 3 {
					t.Fatalf("width %d", d.Width())
				}
				if s := d.UpdateRow(0, []float64{10, 30, 60}); s < d.Threshold() {
					t.Errorf("a row far off the relationship scores %v", s)
				}
			} else if b.NewSensor == nil {
				t.Fatal("no sensor constructor")
			}
		})
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
