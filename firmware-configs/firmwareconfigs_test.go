package firmwareconfigs

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestEmbeddedMatchesDisk: every YAML file on disk is compiled in, with the
// same content. The files themselves are validated by
// edge/internal/config (TestFirmwareConfigsProfiles, TestFirmwareConfigsSites),
// since this package cannot import edge/internal packages.
func TestEmbeddedMatchesDisk(t *testing.T) {
	for _, c := range []struct {
		fsys fs.FS
		dir  string
	}{{Profiles, "profiles"}, {Sites, "sites"}} {
		files, _ := filepath.Glob(filepath.Join(c.dir, "*.yaml"))
		if len(files) == 0 {
			t.Fatalf("no files in %s", c.dir)
		}
		for _, f := range files {
			disk, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			emb, err := fs.ReadFile(c.fsys, filepath.ToSlash(f))
			if err != nil || string(emb) != string(disk) {
				t.Errorf("%s: embedded copy missing or different (%v)", f, err)
			}
		}
	}
	if _, err := fs.ReadFile(Sites, ExampleSite); err != nil {
		t.Errorf("example site: %v", err)
	}
}
