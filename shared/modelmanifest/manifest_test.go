package modelmanifest

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ref(name string, v int, b byte) Ref {
	sha := strings.Repeat(string("0123456789abcdef"[b%16]), 64)
	return Ref{Name: name, Version: strconv.Itoa(v), Kind: "ewma", Key: ArtifactKey("p/", sha), SHA256: sha, Size: 100,
		Promoted: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func TestTargetKeyRoundTrip(t *testing.T) {
	cases := []struct {
		in   string
		want Target
		err  string
	}{
		{in: "*", want: Target{}},
		{in: "edge=plant-a", want: Target{Edge: "plant-a"}},
		{in: "type=vibration,edge=e1", want: Target{Edge: "e1", SensorType: "vibration"}},
		{in: "sensor=pump-*", want: Target{Sensor: "pump-*"}},
		{in: "edge=e1,type=t,sensor=s[", err: "sensor glob"},
		{in: "colour=red", err: "unknown key"},
		{in: "edge", err: "not key=value"},
		{in: "edge=a,edge=b", err: "given twice"},
	}
	for _, c := range cases {
		got, err := ParseTarget(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseTarget(%q) error = %v, want containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", c.in, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ParseTarget(%q) (-want +got):\n%s", c.in, diff)
		}
		again, err := ParseTarget(got.Key())
		if err != nil || again != got {
			t.Errorf("ParseTarget(Key()) of %q = %v, %v", c.in, again, err)
		}
	}
}

func TestTargetMatches(t *testing.T) {
	tg := Target{Edge: "e1", Sensor: "pump-*"}
	if !tg.Matches("e1", "pump-7", "x") || tg.Matches("e2", "pump-7", "x") || tg.Matches("e1", "fan-1", "x") {
		t.Fatal("Matches gave a wrong answer")
	}
	if !(Target{}).Matches("any", "any", "any") {
		t.Fatal("zero target must match everything")
	}
	if (Target{Sensor: "a"}).Specificity() <= (Target{SensorType: "t", Edge: "e"}).Specificity() {
		t.Fatal("a sensor glob must be more specific than type+edge")
	}
}

func TestPromoteRollback(t *testing.T) {
	m := New()
	tg := Target{SensorType: "vibration"}
	m.Promote(tg, ref("m", 1, 1))
	m.Promote(tg, ref("m", 2, 2))
	if m.Promote(tg, ref("m", 2, 2)) {
		t.Fatal("promoting the active ref again reported a change")
	}
	m.Promote(tg, ref("m", 3, 3))
	e, _ := m.Find(tg)
	if e.Active.Version != "3" || len(e.Previous) != 2 || e.Previous[0].Version != "2" {
		t.Fatalf("after promotes: %+v", e)
	}
	now, removed, err := m.Rollback(tg)
	if err != nil || now.Version != "2" || removed.Version != "3" {
		t.Fatalf("rollback = %v %v %v", now, removed, err)
	}
	if _, _, err := m.Rollback(tg); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Rollback(tg); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("third rollback error = %v, want ErrNoPrevious", err)
	}
	if _, _, err := m.Rollback(Target{Edge: "nope"}); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("rollback of unknown target = %v", err)
	}
	for i := 10; i < 30; i++ {
		m.Promote(tg, ref("m", i, byte(i)))
	}
	e, _ = m.Find(tg)
	if len(e.Previous) != MaxPrevious {
		t.Fatalf("history length %d, want %d", len(e.Previous), MaxPrevious)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, back); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

var parseCases = []struct {
	name, in, err string
}{
	{"ok", `{"schema":1,"generation":3,"updated":"2026-01-01T00:00:00Z","entries":[{"target":{"sensor_type":"t"},"active":{"name":"m","version":"1","kind":"k","key":"artifacts/sha256/` + strings.Repeat("a", 64) + `","sha256":"` + strings.Repeat("a", 64) + `","size":5,"promoted":"2026-01-01T00:00:00Z"}}]}`, ""},
	{"future schema", `{"schema":2,"entries":[]}`, "schema 2"},
	{"no schema", `{"entries":[]}`, "missing"},
	{"unknown field", `{"schema":1,"entries":[],"colour":1}`, "unknown field"},
	{"bad sha", `{"schema":1,"entries":[{"target":{},"active":{"name":"m","version":"1","key":"k","sha256":"XYZ","size":5}}]}`, "sha256"},
	{"dup target", `{"schema":1,"entries":[{"target":{},"active":{"name":"m","version":"1","key":"k","sha256":"` + strings.Repeat("a", 64) + `","size":5}},{"target":{},"active":{"name":"m","version":"1","key":"k","sha256":"` + strings.Repeat("a", 64) + `","size":5}}]}`, "same target"},
	{"trailing", `{"schema":1,"entries":[]} {}`, "after top-level value"},
	{"not json", `schema: 1`, "decode manifest"},
}

func TestParse(t *testing.T) {
	for _, c := range parseCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in))
			if c.err == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Parse error = %v, want containing %q", err, c.err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range parseCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatalf("a parsed manifest does not marshal: %v", err)
		}
		if _, err := Parse(b); err != nil {
			t.Fatalf("re-parse of marshalled manifest: %v", err)
		}
	})
}
