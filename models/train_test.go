package models

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
	for _, kind := range append([]string{NamePCA}, Builtins()...) {
		t.Run(kind, func(t *testing.T) {
			m, err := Train(rows, TrainOptions{Kind: kind, Name: "pump7-" + kind, Version: "v1", Sensors: []string{"a", "b", "c"},
				Times: times, Source: "test", Now: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)})
			if err != nil {
				t.Fatal(err)
			}
			// CUSUM is exempt: on this near-random-walk load (φ = 0.99) the
			// level really does change, and reporting it is its job.
			if rate := m.Training.Metrics["train_alarm_rate"]; rate > 0.01 && kind != NameCUSUM {
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
			b, err := FromArtifact(got)
			if err != nil {
				t.Fatal(err)
			}
			if b.Ref != "pump7-"+kind+"@v1" {
				t.Errorf("ref %q", b.Ref)
			}
			if kind == NamePCA {
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

func TestFromArtifactRejectsBadParams(t *testing.T) {
	base := artifact.Model{Name: "m", Version: "1", Threshold: 0.5, Calibration: artifact.Calibration{Method: "tail-log10", Decades: 10}}
	tests := []struct {
		kind, params, want string
	}{
		{NameEWMA, `{"alpha": 2}`, "alpha"},
		{NameEWMA, `{"alpha": 0.1, "bogus": 1}`, "unknown field"},
		{NameMAD, `{"window": 3, "clip": 3}`, "window"},
		{NameEnsemble, `{"components": ["ewma", "rm -rf"]}`, "unknown component"},
		{NameEnsemble, `{"components": ["ensemble"]}`, "unknown component"},
		{NamePCA, `{"mean": [1, 2], "scale": [1], "components": [[1, 0]], "eigenvalues": [1]}`, "scales"},
		{NamePCA, `{"mean": [1, 2], "scale": [1, 1], "components": [[1, 0]], "eigenvalues": [-1], "t2": {"counts": []}, "spe": {"counts": []}}`, "eigenvalue"},
		{"teapot", `{}`, "unknown kind"},
	}
	for _, tc := range tests {
		m := base
		m.Kind, m.Params = tc.kind, json.RawMessage(tc.params)
		_, err := FromArtifact(&m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: err = %v, want it to mention %q", tc.kind, tc.params, err, tc.want)
		}
	}
}
