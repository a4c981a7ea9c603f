package simulate

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smartmaint/smartmaint/models/eval"
)

func TestLoadFile(t *testing.T) {
	t.Parallel()
	var got Config
	if err := LoadFile("testdata/good.yaml", &got); err != nil {
		t.Fatal(err)
	}
	want := Config{
		Broker: "tcp://127.0.0.1:1883", Site: "northfield", Line: "line2", Assets: 4, Rate: 2, QoS: 0,
		Duration: 10 * time.Minute, Seed: 42, Faults: FaultsSchedule, FaultEvery: 20 * time.Minute,
		Schedule: []FaultSpec{
			{Asset: "pump3", Kind: eval.BearingWear, Start: 2 * time.Minute, Duration: 5 * time.Minute, Magnitude: 8},
			{Asset: "pump1", Sensor: "flow", Kind: eval.Step, Start: 30 * time.Second, Duration: 2 * time.Minute, Magnitude: 6},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadFile (-want +got):\n%s", diff)
	}
}

func TestLoadFileReportsEveryProblem(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"testdata/bad.yaml", []string{
			"testdata/bad.yaml: version: 2, want 1",
			"testdata/bad.yaml: qos: 3, want 0, 1 or 2",
			`testdata/bad.yaml:5: schedule: fault "pump1/flow:melt@30s": unknown fault kind "melt"`,
			"testdata/bad.yaml:6: schedule: want a string",
		}},
		{"testdata/unknown.yaml", []string{"line 2: field asets not found"}},
		{"testdata/missing.yaml", []string{"read simulator config"}},
	} {
		var cfg Config
		err := LoadFile(tc.file, &cfg)
		if err == nil {
			t.Errorf("LoadFile(%s) succeeded, want errors", tc.file)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("LoadFile(%s) = %q, want it to contain %q", tc.file, err, w)
			}
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c := Config{Rate: -1, QoS: 3, Assets: 0, Faults: "sometimes", Window: -1, Topic: "plant/{site}", Site: "a/b", Duration: -time.Second}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	for _, w := range []string{"broker:", "assets: 0", "rate: -1", "qos: 3", "duration: -1s", `faults: "sometimes"`, "window: -1", "lacks {asset}", "lacks {sensor}", `"a/b"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %q, want it to contain %q", err, w)
		}
	}
}
