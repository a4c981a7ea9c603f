package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestGoodConfigs: every testdata/*.good.yaml loads without problems.
func TestGoodConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.yaml")
	if len(files) == 0 {
		t.Fatal("no good fixtures")
	}
	for _, f := range files {
		cfg, profiles, probs := Load(f)
		if len(probs) > 0 {
			t.Errorf("%s: unexpected problems:\n%v", f, probs)
			continue
		}
		if cfg.EdgeID == "" || len(profiles) < 6 {
			t.Errorf("%s: edge id %q, %d profiles", f, cfg.EdgeID, len(profiles))
		}
	}
}

// TestBadConfigs: every testdata/*.bad.yaml reports exactly the problems
// listed in its .errors file (paths relative to testdata).
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) == 0 {
		t.Fatal("no bad fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".errors")
			if err != nil {
				t.Fatal(err)
			}
			_, _, probs := Load(f)
			var got []string
			for _, p := range probs {
				got = append(got, strings.TrimPrefix(p.String(), "testdata/"))
			}
			wantLines := strings.Split(strings.TrimSpace(string(want)), "\n")
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], mustAbs(t, "testdata"), "testdata/")
			}
			if diff := cmp.Diff(wantLines, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a + "/"
}

func TestFullConfigValues(t *testing.T) {
	cfg, profiles, probs := Load("testdata/full.good.yaml")
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	abs := mustAbs(t, "testdata")
	if cfg.Broker.PasswordFile != abs+"secret.txt" || cfg.DataDir != abs+"data" {
		t.Errorf("relative paths not resolved against the config's directory: %q %q", cfg.Broker.PasswordFile, cfg.DataDir)
	}
	pw, err := cfg.Broker.Password()
	if err != nil || pw != "s3cret" {
		t.Errorf("password = %q, %v", pw, err)
	}
	if _, ok := profiles["custom_flow"]; !ok {
		t.Error("profile from profiles.dirs not loaded")
	}
	if cfg.Broker.Reconnect.Max.String() != "1m0s" || *cfg.Subscriptions[0].QoS != 2 || cfg.Subscriptions[1].QoSOrDefault() != 0 {
		t.Errorf("values not decoded: %+v", cfg.Broker.Reconnect)
	}
	if cfg.MemoryLimit != 128<<20 {
		t.Errorf("memory_limit = %d, want %d", cfg.MemoryLimit, 128<<20)
	}
	if cfg.ClientID() != "edge-a" {
		t.Errorf("client id %q", cfg.ClientID())
	}
}

func TestDefaultsApplied(t *testing.T) {
	cfg, _, probs := Load("testdata/minimal.good.yaml")
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	d := Default()
	if cfg.Broker.Reconnect.Max != d.Broker.Reconnect.Max || cfg.Admin.Listen != "127.0.0.1:9470" || cfg.Broker.CleanSession {
		t.Errorf("defaults not applied: %+v", cfg.Broker)
	}
	if cfg.ClientID() != "sm-edge-e1" {
		t.Errorf("default client id %q", cfg.ClientID())
	}
	if cfg.Subscriptions[0].QoSOrDefault() != 1 {
		t.Error("default QoS is not 1")
	}
}

// TestExampleValidates: `sm-edge config example` prints a config that
// validates (it is firmware-configs/sites/example-site.yaml).
func TestExampleValidates(t *testing.T) {
	cfg, profiles, probs := Parse("example.yaml", Example())
	if len(probs) > 0 {
		t.Fatalf("example config has problems:\n%v", probs)
	}
	if len(cfg.Subscriptions) < 4 || len(profiles) < 6 {
		t.Errorf("example too small: %d subscriptions, %d profiles", len(cfg.Subscriptions), len(profiles))
	}
	onDisk, err := os.ReadFile("../../../firmware-configs/sites/example-site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(Example()) {
		t.Error("embedded example differs from firmware-configs/sites/example-site.yaml")
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add(Example())
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, probs := Parse("fuzz.yaml", data)
		if len(probs) == 0 && cfg == nil {
			t.Fatal("no config and no problems")
		}
		for _, p := range probs {
			if p.Msg == "" {
				t.Fatalf("problem without message: %+v", p)
			}
		}
	})
}
