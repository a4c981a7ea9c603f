package strictyaml

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

const doc = `a: 1
b:
  c: x
  list:
    - d: 1
    - d: 2
      e: 3
m:
  site1/x.y:
    h: 5
`

func TestLocate(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"a":               1,
		"b.c":             3,
		"b.list[1].e":     7,
		"b.list[1]":       6,
		"b.list[0].zzz":   5, // missing field: its parent item
		"b.missing":       2, // missing field: the section's key
		"m[site1/x.y].h":  10,
		"m[site1/x.y].no": 9,
		"nothing":         1,
	} {
		if got := Locate(&root, path); got != want {
			t.Errorf("Locate(%q) = %d, want %d", path, got, want)
		}
	}
}

func TestPrefixAndFromError(t *testing.T) {
	var root yaml.Node
	_ = yaml.Unmarshal([]byte(doc), &root)
	err := Prefix("b", errors.Join(Errorf("c", "bad %d", 1), Errorf("list[1].e", "worse")))
	got := FromError("f.yaml", &root, "", errors.Join(err, errors.New("no path here")))
	want := Problems{
		{File: "f.yaml", Line: 3, Path: "b.c", Msg: "bad 1"},
		{File: "f.yaml", Line: 7, Path: "b.list[1].e", Msg: "worse"},
		{File: "f.yaml", Line: 1, Path: "", Msg: "no path here"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if s := got[0].String(); s != "f.yaml:3: b.c: bad 1" {
		t.Errorf("String() = %q", s)
	}
}

func TestDecodeCollectsAllProblems(t *testing.T) {
	type inner struct {
		N int `yaml:"n"`
	}
	type cfg struct {
		A int   `yaml:"a"`
		B inner `yaml:"b"`
	}
	var c cfg
	_, probs := Decode("f.yaml", []byte("a: x\nb:\n  n: y\n  extra: 1\nzz: 2\n"), &c)
	var got []string
	for _, p := range probs {
		got = append(got, p.String())
	}
	want := []string{
		"f.yaml:1: a: cannot use string `x` as int",
		"f.yaml:3: b.n: cannot use string `y` as int",
		"f.yaml:4: b.extra: unknown field",
		"f.yaml:5: zz: unknown field",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, probs := Decode("f.yaml", []byte("a: 1\n---\na: 2\n"), &c); len(probs) != 1 {
		t.Errorf("two documents: %v", probs)
	}
}
