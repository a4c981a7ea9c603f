package conventions

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/smartmaint/smartmaint"

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Deps       []string
	Imports    []string
	GoFiles    []string
	Standard   bool
}

// list runs `go list -json` on patterns and decodes the stream of packages.
func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, errb.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestEveryPackageHasDoc(t *testing.T) {
	for _, p := range list(t, module+"/...") {
		if len(p.GoFiles) == 0 {
			continue // test-only directories
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no package doc comment", p.ImportPath)
		}
	}
}

// forbiddenInEdge are import-path prefixes that must never be linked into
// sm-edge: it is a small static binary on a plant's edge box.
var forbiddenInEdge = []string{
	"github.com/jackc/pgx",
	module + "/collector/",
	module + "/models/train", // training runs in the collector only
}

func TestEdgeBinaryDependencies(t *testing.T) {
	ps := list(t, "-deps", module+"/edge/cmd/sm-edge")
	for _, p := range ps {
		for _, f := range forbiddenInEdge {
			if strings.HasPrefix(p.ImportPath, f) || p.ImportPath+"/" == f {
				t.Errorf("sm-edge links %s (forbidden prefix %s)", p.ImportPath, f)
			}
		}
	}
	if len(ps) == 0 {
		t.Fatal("go list returned no packages for sm-edge")
	}
}

func TestDependencyDirection(t *testing.T) {
	for _, p := range list(t, module+"/...") {
		var banned []string
		switch {
		case strings.HasPrefix(p.ImportPath, module+"/shared/"), strings.HasPrefix(p.ImportPath, module+"/models"):
			banned = []string{module + "/edge/", module + "/collector/"}
		case strings.HasPrefix(p.ImportPath, module+"/edge/"):
			banned = []string{module + "/collector/"}
		case strings.HasPrefix(p.ImportPath, module+"/collector/"):
			banned = []string{module + "/edge/"}
		}
		if strings.HasPrefix(p.ImportPath, module+"/models") {
			banned = append(banned, "net/http", "github.com/aws/")
		}
		for _, imp := range p.Imports {
			for _, b := range banned {
				if strings.HasPrefix(imp, b) || imp == strings.TrimSuffix(b, "/") {
					t.Errorf("%s imports %s, against the dependency rules in ARCHITECTURE.md §2", p.ImportPath, imp)
				}
			}
		}
	}
}

func TestNoGenericPackageNames(t *testing.T) {
	bad := map[string]bool{"util": true, "utils": true, "common": true, "helpers": true, "types": true, "misc": true}
	for _, p := range list(t, module+"/...") {
		if bad[p.Name] {
			t.Errorf("package %s is named %q; name packages by what they do (STYLE.md)", p.ImportPath, p.Name)
		}
	}
}
