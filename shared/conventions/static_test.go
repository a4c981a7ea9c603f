package conventions

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestEdgeBuildsStatic builds sm-edge the way the Makefile does and checks
// that the result is a static executable with no dynamic loader, so it runs
// on any Linux edge box.
func TestEdgeBuildsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	out := filepath.Join(t.TempDir(), "sm-edge")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, module+"/edge/cmd/sm-edge")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build sm-edge: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("open built binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("sm-edge has a program interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("sm-edge needs shared libraries %v", libs)
	}
}
