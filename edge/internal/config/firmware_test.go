package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/smartmaint/smartmaint/edge/internal/mapping"
)

// firmwareDir is the repository's firmware-configs directory. Its files
// are validated here because edge/internal packages cannot be imported
// from firmware-configs.
const firmwareDir = "../../../firmware-configs"

// TestFirmwareConfigsProfiles validates every profile file on disk and
// checks the set covers the sensor kinds the site example relies on.
func TestFirmwareConfigsProfiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(firmwareDir, "profiles", "*.yaml"))
	if err != nil || len(files) < 6 {
		t.Fatalf("want at least 6 profiles, found %d (%v)", len(files), err)
	}
	types := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, probs := mapping.ParseProfile(f, data)
		if len(probs) > 0 {
			t.Errorf("%v", probs)
			continue
		}
		if want := filepath.Base(f); want != p.Name+".yaml" {
			t.Errorf("%s: profile name %q does not match the file name", f, p.Name)
		}
		if p.Limits.H == nil && p.Limits.HH == nil && p.Limits.L == nil && p.Limits.LL == nil {
			t.Errorf("%s: no alarm limits", f)
		}
		if p.Limits.Deadband == nil {
			t.Errorf("%s: no deadband", f)
		}
		types[p.Type] = true
	}
	for _, ty := range []string{"vibration_velocity", "temperature", "electric_current", "pressure", "volumetric_flow", "current_loop"} {
		if !types[ty] {
			t.Errorf("no profile of type %s", ty)
		}
	}
}

// TestFirmwareConfigsSites validates every site config on disk.
func TestFirmwareConfigsSites(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(firmwareDir, "sites", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no site configs")
	}
	for _, f := range files {
		if _, _, probs := Load(f); len(probs) > 0 {
			t.Errorf("%s:\n%v", f, probs)
		}
	}
}

func TestProfileProblemsHaveLines(t *testing.T) {
	dir := t.TempDir()
	bad := "version: 1\nname: Bad Name\ntype: pressure\nunit: bar\nrange: {min: 10, max: 0}\nlimits: {h: 5, hh: 4, deadband: -1}\ndetector: x\ncolour: red\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	ps := mapping.Profiles{}
	probs := mapping.LoadProfiles(ps, os.DirFS(dir), ".", dir)
	want := []string{dir + "/bad.yaml:8: colour: unknown field"}
	if len(probs) != 1 || probs[0].String() != want[0] {
		t.Fatalf("problems = %v, want %v", probs, want)
	}
	bad = bad[:len(bad)-len("colour: red\n")]
	_ = os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o600)
	probs = mapping.LoadProfiles(ps, os.DirFS(dir), ".", dir)
	var got []string
	for _, p := range probs {
		got = append(got, p.String())
	}
	wantAll := []string{
		dir + `/bad.yaml:2: name: must be a non-empty name of a-z, 0-9 and _ (got "Bad Name")`,
		dir + "/bad.yaml:5: range: min (10) must be below max (0)",
		dir + "/bad.yaml:6: limits.hh: 4 must be above h (5); limits are ordered ll < l < h < hh",
		dir + "/bad.yaml:6: limits.deadband: must be a finite number ≥ 0",
	}
	if len(got) != len(wantAll) {
		t.Fatalf("got %d problems:\n%v\nwant:\n%v", len(got), got, wantAll)
	}
	for i := range got {
		if got[i] != wantAll[i] {
			t.Errorf("problem %d = %q, want %q", i, got[i], wantAll[i])
		}
	}
	if len(ps) != 0 {
		t.Error("a bad profile was loaded")
	}
}
