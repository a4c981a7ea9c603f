package detect

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate("scoring"); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	c := DefaultConfig()
	c.Detector = "oracle"
	c.Events.MinReadings = 0
	c.Events.ClearRatio = 2
	c.Assets = []AssetConfig{{Name: "p1", Sensors: []string{"a", "b"}}, {Name: "", Sensors: []string{"b"}}}
	err := c.Validate("scoring")
	if err == nil {
		t.Fatal("no error")
	}
	var got []string
	for _, l := range strings.Split(err.Error(), "\n") {
		got = append(got, l[:strings.Index(l, ":")])
	}
	want := []string{"scoring.detector", "scoring.events.min_readings", "scoring.events.clear_ratio", "scoring.assets[1].name", "scoring.assets[1].sensors", "scoring.assets[1].sensors"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problem paths (-want +got):\n%s\n%v", diff, err)
	}
}

func TestConfigModelSet(t *testing.T) {
	c := DefaultConfig()
	c.Assets = []AssetConfig{{Name: "p1", Sensors: []string{"a", "b"}}}
	set, err := c.ModelSet()
	if err != nil {
		t.Fatal(err)
	}
	if set.Default.Ref != "ensemble@builtin" || len(set.Assets) != 1 || set.Assets[0].Row == nil {
		t.Fatalf("set %+v", set)
	}
	if diff := cmp.Diff(DefaultEventConfig(), DefaultConfig().EventConfig()); diff != "" {
		t.Error(diff)
	}
}
