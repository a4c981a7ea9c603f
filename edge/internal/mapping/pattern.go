package mapping

import (
	"fmt"
	"strings"
)

type segKind uint8

const (
	segLiteral   segKind = iota // a fixed level, e.g. "plant"
	segPlus                     // "+": any one level, not captured
	segNamed                    // "{name}": any one level, captured
	segHash                     // "#": any number of levels (also none), not captured
	segNamedRest                // "{name#}": any number of levels, captured joined by "/"
)

type segment struct {
	kind segKind
	lit  string // literal text, or the variable name
}

// Pattern is a topic pattern with named segments, such as
// "plant/{site}/{line}/{asset}/{sensor}". Each "{name}" matches one topic
// level and captures it; "+" matches one level without capturing; a final
// "#" matches the remaining levels (MQTT semantics, so also none) and a final
// "{name#}" captures them joined with "/". A Pattern is immutable and safe
// for concurrent use.
type Pattern struct {
	raw   string
	segs  []segment
	names []string
}

// ParsePattern parses a topic pattern. Variable names are lower-case
// letters, digits and underscores; each may appear once.
func ParsePattern(s string) (*Pattern, error) {
	if s == "" {
		return nil, fmt.Errorf("empty topic pattern")
	}
	if strings.ContainsAny(s, "\x00") {
		return nil, fmt.Errorf("topic pattern contains a NUL character")
	}
	levels := strings.Split(s, "/")
	p := &Pattern{raw: s, segs: make([]segment, 0, len(levels))}
	seen := map[string]bool{}
	for i, l := range levels {
		last := i == len(levels)-1
		switch {
		case l == "+":
			p.segs = append(p.segs, segment{kind: segPlus})
		case l == "#":
			if !last {
				return nil, fmt.Errorf("level %d: \"#\" is only allowed as the last level", i+1)
			}
			p.segs = append(p.segs, segment{kind: segHash})
		case strings.HasPrefix(l, "{") && strings.HasSuffix(l, "}"):
			name := l[1 : len(l)-1]
			kind := segNamed
			if strings.HasSuffix(name, "#") {
				if !last {
					return nil, fmt.Errorf("level %d: %q is only allowed as the last level", i+1, l)
				}
				name = strings.TrimSuffix(name, "#")
				kind = segNamedRest
			}
			if !validName(name) {
				return nil, fmt.Errorf("level %d: invalid variable name %q (use a-z, 0-9 and _)", i+1, name)
			}
			if name == ItemVar {
				return nil, fmt.Errorf("level %d: variable name %q is reserved for the JSON item name", i+1, name)
			}
			if seen[name] {
				return nil, fmt.Errorf("level %d: variable {%s} appears twice", i+1, name)
			}
			seen[name] = true
			p.segs = append(p.segs, segment{kind: kind, lit: name})
			p.names = append(p.names, name)
		case strings.ContainsAny(l, "+#{}"):
			return nil, fmt.Errorf("level %d: %q mixes text with a wildcard or variable; a variable must be a whole level", i+1, l)
		default:
			p.segs = append(p.segs, segment{kind: segLiteral, lit: l})
		}
	}
	return p, nil
}

func validName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.raw }

// Names returns the variable names in order of appearance.
func (p *Pattern) Names() []string { return p.names }

// Filter returns the MQTT subscription filter of the pattern: every
// variable becomes "+" (or "#" for a final "{name#}").
func (p *Pattern) Filter() string {
	var b strings.Builder
	for i, s := range p.segs {
		if i > 0 {
			b.WriteByte('/')
		}
		switch s.kind {
		case segLiteral:
			b.WriteString(s.lit)
		case segPlus, segNamed:
			b.WriteByte('+')
		case segHash, segNamedRest:
			b.WriteByte('#')
		}
	}
	return b.String()
}

// Match reports whether topic matches the pattern and, if so, appends the
// captured values to vals in the order of Names. Substrings of topic are
// captured without copying; Match allocates only if vals must grow.
func (p *Pattern) Match(topic string, vals []string) ([]string, bool) {
	base := len(vals)
	if len(topic) > 0 && topic[0] == '$' && len(p.segs) > 0 && p.segs[0].kind != segLiteral {
		return vals[:base], false // MQTT: wildcards never match $SYS-style topics
	}
	rest, exhausted := topic, false
	for _, s := range p.segs {
		if s.kind == segHash || s.kind == segNamedRest {
			// MQTT: "a/#" matches "a" too; then the captured rest is empty.
			if s.kind == segNamedRest {
				vals = append(vals, rest)
			}
			return vals, true
		}
		if exhausted {
			return vals[:base], false
		}
		level := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			level, rest = rest[:j], rest[j+1:]
		} else {
			rest, exhausted = "", true
		}
		switch s.kind {
		case segLiteral:
			if level != s.lit {
				return vals[:base], false
			}
		case segNamed:
			vals = append(vals, level)
		}
	}
	if !exhausted {
		return vals[:base], false // the topic has more levels than the pattern
	}
	return vals, true
}
