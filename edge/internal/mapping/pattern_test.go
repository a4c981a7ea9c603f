package mapping

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var patternCases = []struct {
	pattern string
	filter  string
	topic   string
	vals    []string // nil: no match
}{
	{"plant/{site}/{line}/{asset}/{sensor}", "plant/+/+/+/+", "plant/s1/l2/pump7/vib_x", []string{"s1", "l2", "pump7", "vib_x"}},
	{"plant/{site}/{line}/{asset}/{sensor}", "plant/+/+/+/+", "plant/s1/l2/pump7", nil},
	{"plant/{site}/{line}/{asset}/{sensor}", "plant/+/+/+/+", "plant/s1/l2/pump7/vib_x/extra", nil},
	{"plant/{site}/{line}/{asset}/{sensor}", "plant/+/+/+/+", "other/s1/l2/pump7/vib_x", nil},
	{"plant/{site}/+/{sensor}", "plant/+/+/+", "plant/s1/ignored/t1", []string{"s1", "t1"}},
	{"a/{x}", "a/+", "a/", []string{""}},
	{"a/{x}/#", "a/+/#", "a/b", []string{"b"}},
	{"a/{x}/#", "a/+/#", "a/b/c/d", []string{"b"}},
	{"a/{rest#}", "a/#", "a/b/c", []string{"b/c"}},
	{"a/{rest#}", "a/#", "a", []string{""}},
	{"{x}/y", "+/y", "$SYS/y", nil},
	{"$SYS/{x}", "$SYS/+", "$SYS/load", []string{"load"}},
	{"spBv1.0/{group}/+/{node}/{device#}", "spBv1.0/+/+/+/#", "spBv1.0/g1/DDATA/n1/d1", []string{"g1", "n1", "d1"}},
	{"spBv1.0/{group}/+/{node}/{device#}", "spBv1.0/+/+/+/#", "spBv1.0/g1/NDATA/n1", []string{"g1", "n1", ""}},
	{"x", "x", "x", []string{}},
	{"x", "x", "x/", nil},
}

func TestPatternMatch(t *testing.T) {
	for _, tc := range patternCases {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tc.pattern, err)
		}
		if got := p.Filter(); got != tc.filter {
			t.Errorf("%q.Filter() = %q, want %q", tc.pattern, got, tc.filter)
		}
		got, ok := p.Match(tc.topic, nil)
		if ok != (tc.vals != nil) {
			t.Errorf("%q.Match(%q) ok = %v, want %v", tc.pattern, tc.topic, ok, tc.vals != nil)
			continue
		}
		if ok {
			if got == nil {
				got = []string{}
			}
			if diff := cmp.Diff(tc.vals, got); diff != "" {
				t.Errorf("%q.Match(%q) vals (-want +got):\n%s", tc.pattern, tc.topic, diff)
			}
		}
	}
}

func TestParsePatternErrors(t *testing.T) {
	for _, tc := range []struct{ pattern, err string }{
		{"", "empty"},
		{"a/#/b", "only allowed as the last level"},
		{"a/{x#}/b", "only allowed as the last level"},
		{"a/{X}", "invalid variable name"},
		{"a/{}", "invalid variable name"},
		{"a/{x}/{x}", "appears twice"},
		{"a/pre{x}", "whole level"},
		{"a/b+", "whole level"},
		{"a/{item}", "reserved"},
	} {
		_, err := ParsePattern(tc.pattern)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParsePattern(%q) = %v, want error containing %q", tc.pattern, err, tc.err)
		}
	}
}

// FuzzPatternMatch checks that matching never panics, that a match
// captures exactly one value per variable, and that rebuilding the topic
// from the captures gives the topic back.
func FuzzPatternMatch(f *testing.F) {
	for _, tc := range patternCases {
		f.Add(tc.pattern, tc.topic)
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		vals, ok := p.Match(topic, nil)
		if !ok {
			return
		}
		if len(vals) != len(p.Names()) {
			t.Fatalf("%q on %q: %d values for %d names", pattern, topic, len(vals), len(p.Names()))
		}
		// Rebuild: only possible when there is no anonymous wildcard.
		var b strings.Builder
		k := 0
		for i, s := range p.segs {
			switch s.kind {
			case segPlus, segHash:
				return
			case segNamedRest:
				if vals[k] == "" {
					// "a/{rest#}" also matches "a": no trailing level at all.
					out := b.String()
					if out != topic && out+"/" != topic && !(i == 0 && topic == "") {
						t.Fatalf("%q on %q: rebuilt %q", pattern, topic, out)
					}
					return
				}
			}
			if i > 0 {
				b.WriteByte('/')
			}
			if s.kind == segLiteral {
				b.WriteString(s.lit)
			} else {
				b.WriteString(vals[k])
				k++
			}
		}
		if b.String() != topic {
			t.Fatalf("%q on %q: rebuilt %q", pattern, topic, b.String())
		}
	})
}
