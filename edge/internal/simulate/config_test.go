package simulate

import (
	"os"
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

// Given an sm-edge site config, the simulator publishes to its broker,
// with its first usable topic pattern and JSON field names (sm-edge's
// defaults for paths it leaves out).
func TestLoadFileFromEdgeConfig(t *testing.T) {
	t.Parallel()
	var cfg Config
	if err := LoadFile("testdata/edge-site.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	want := Config{Broker: "tcp://127.0.0.1:1884", Topic: "gw/{site}/{line}/{asset}/{sensor}/data", Fields: Fields{Value: "val", Timestamp: "time", Quality: "quality"}}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("LoadFile (-want +got):\n%s", diff)
	}
	pf := newPayloadFormat(cfg.Fields)
	got := string(pf.append(nil, 1.5, testStart, true))
	if wantP := `{"val":1.5,"time":1795687140000,"quality":"good"}`; got != wantP {
		t.Errorf("payload %s, want %s", got, wantP)
	}

	err := LoadFile("testdata/edge-unusable.yaml", &cfg)
	for _, w := range []string{
		"testdata/edge-unusable.yaml: no subscription the simulator can publish to",
		`subscriptions[0] "spBv1.0/{group}/+/{node}/{device#}": format sparkplug`,
		`subscriptions[1] "plant/{area}/{asset}/{sensor}": cannot fill {area}`,
		`subscriptions[2] "plant/{asset}/{sensor}": nested JSON path data.v`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("LoadFile(edge-unusable) = %v, want it to contain %q", err, w)
		}
	}
}

// The example site config that technicians copy maps exactly what the
// simulator publishes by default.
func TestExampleSiteConfigMatchesDefaults(t *testing.T) {
	t.Parallel()
	const example = "../../../firmware-configs/sites/example-site.yaml"
	if _, err := os.Stat(example); err != nil {
		t.Skipf("%s not in this tree yet: %v", example, err)
	}
	var cfg Config
	if err := LoadFile(example, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Topic != DefaultTopic || cfg.Fields != DefaultFields() {
		t.Errorf("example config: topic %q fields %+v; the simulator's defaults are %q %+v", cfg.Topic, cfg.Fields, DefaultTopic, DefaultFields())
	}
}
