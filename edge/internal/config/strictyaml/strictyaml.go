// Package strictyaml decodes YAML strictly (unknown keys are errors) and
// turns every problem, whether from decoding or from a Validate method,
// into a Problem that names the file, the line and the field path.
//
// Validation errors follow one convention so that any package can report
// problems without importing this one: Validate returns errors.Join of
// errors whose text is "path: message", where path is relative to the
// value validated, dot-separated, with "[i]" for list items and
// "[key]" for map entries (for example "subscriptions[2].json.value:
// required"). Prefix joins a section name in front of such paths.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a file.
type Problem struct {
	File string
	// Line is 1-based; 0 when the position is unknown.
	Line int
	// Path is the field path, e.g. "broker.tls.ca_file"; "" for the whole file.
	Path string
	Msg  string
}

// String formats the problem as "FILE:LINE: path: message".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is a list of problems; as an error it prints one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	lineRE         = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlLineRE     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// Decode parses data strictly into v. It returns the parsed document node
// (for Locate) and every decoding problem found; it keeps going after
// type errors so that all of them are reported. A nil node means the
// file is not YAML at all.
func Decode(file string, data []byte, v any) (*yaml.Node, Problems) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Problems{syntaxProblem(file, err)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &root, Problems{{File: file, Msg: "file is empty"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		if err := dec.Decode(new(yaml.Node)); err == nil {
			return &root, Problems{{File: file, Msg: "more than one YAML document; put everything in one"}}
		}
		return &root, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &root, Problems{syntaxProblem(file, err)}
	}
	var ps Problems
	for _, e := range te.Errors {
		if m := unknownFieldRE.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			path := pathOfKeyAt(&root, line, m[2])
			ps = append(ps, Problem{File: file, Line: line, Path: path, Msg: "unknown field"})
			continue
		}
		if m := lineRE.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			ps = append(ps, Problem{File: file, Line: line, Path: pathOfValueAt(&root, line, tagKind(m[2])), Msg: cleanTypeMsg(m[2])})
			continue
		}
		ps = append(ps, Problem{File: file, Msg: e})
	}
	return &root, ps
}

func syntaxProblem(file string, err error) Problem {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return Problem{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// cleanTypeMsg shortens yaml's "cannot unmarshal !!str `abc` into int".
func cleanTypeMsg(s string) string {
	s = strings.Replace(s, "cannot unmarshal !!str", "cannot use string", 1)
	s = strings.Replace(s, "cannot unmarshal !!int", "cannot use number", 1)
	s = strings.Replace(s, "cannot unmarshal !!float", "cannot use number", 1)
	s = strings.Replace(s, "cannot unmarshal !!bool", "cannot use boolean", 1)
	s = strings.Replace(s, "cannot unmarshal !!seq", "cannot use a list", 1)
	s = strings.Replace(s, "cannot unmarshal !!map", "cannot use a mapping", 1)
	s = strings.Replace(s, "cannot unmarshal", "cannot use", 1)
	return strings.Replace(s, " into ", " as ", 1)
}

// FromError converts a Validate error (errors.Join of "path: message"
// errors, possibly nested) into problems located with root. prefix is
// put in front of every path (for a section, e.g. "buffer").
func FromError(file string, root *yaml.Node, prefix string, err error) Problems {
	var ps Problems
	for _, e := range flatten(err) {
		path, msg := SplitPath(e.Error())
		path = joinPath(prefix, path)
		ps = append(ps, Problem{File: file, Line: Locate(root, path), Path: path, Msg: msg})
	}
	return ps
}

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// SplitPath splits "a.b[0].c: message" into its path and message. A text
// without a path (no ": " or a first part with spaces) has path "".
func SplitPath(s string) (path, msg string) {
	i := strings.Index(s, ": ")
	if i <= 0 {
		return "", s
	}
	p := s[:i]
	if strings.ContainsAny(p, " \t") && !strings.Contains(p, "[") {
		return "", s
	}
	return p, s[i+2:]
}

func joinPath(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}

// Errorf returns an error "path: message" in the convention above.
func Errorf(path, format string, args ...any) error {
	return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
}

// Prefix returns err with prefix put in front of the path of each joined
// error, so a component can validate a sub-struct and report full paths.
func Prefix(prefix string, err error) error {
	var out []error
	for _, e := range flatten(err) {
		path, msg := SplitPath(e.Error())
		out = append(out, fmt.Errorf("%s: %s", joinPath(prefix, path), msg))
	}
	return errors.Join(out...)
}

// Locate returns the line of the value at path in the document, or of the
// closest existing parent when the field itself is absent (a missing
// required field is reported where its section is). 0 when unknown.
func Locate(root *yaml.Node, path string) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line, parentKey := 0, 0
	if n != nil {
		line = n.Line
	}
	for _, part := range splitParts(path) {
		next, keyLine := child(n, part)
		if next == nil {
			if keyLine > 0 {
				return keyLine
			}
			if parentKey > 0 {
				return parentKey // the section's key line
			}
			return line
		}
		n, parentKey = next, keyLine
		line = n.Line
		if keyLine > 0 {
			line = keyLine
		}
	}
	return line
}

// splitParts splits "a.b[0].c[k.x]" into ["a","b","0","c","k.x"].
func splitParts(path string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch c {
		case '.':
			if cur.Len() > 0 {
				parts = append(parts, cur.String())
				cur.Reset()
			}
		case '[':
			if cur.Len() > 0 {
				parts = append(parts, cur.String())
				cur.Reset()
			}
			j := strings.IndexByte(path[i:], ']')
			if j < 0 {
				parts = append(parts, path[i+1:])
				return parts
			}
			parts = append(parts, strings.Trim(path[i+1:i+j], `"`))
			i += j
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		parts = append(parts, cur.String())
	}
	return parts
}

func child(n *yaml.Node, part string) (*yaml.Node, int) {
	if n == nil {
		return nil, 0
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	case yaml.SequenceNode:
		idx, err := strconv.Atoi(part)
		if err == nil && idx >= 0 && idx < len(n.Content) {
			return n.Content[idx], 0
		}
	}
	return nil, 0
}

// pathOfKeyAt finds the mapping key named key on line and returns its path.
func pathOfKeyAt(root *yaml.Node, line int, key string) string {
	var found string
	walk(root, "", func(path string, k, v *yaml.Node) bool {
		if k != nil && k.Line == line && k.Value == key {
			found = path
			return true
		}
		return false
	})
	return found
}

// tagKind returns the node kind named in a yaml type error
// ("cannot unmarshal !!map ..."), or 0 when unknown.
func tagKind(msg string) yaml.Kind {
	switch {
	case strings.Contains(msg, "!!map"):
		return yaml.MappingNode
	case strings.Contains(msg, "!!seq"):
		return yaml.SequenceNode
	case strings.Contains(msg, "!!"):
		return yaml.ScalarNode
	}
	return 0
}

// pathOfValueAt returns the path of the value on line that a type error
// is about: a node of the given kind, preferably a mapping value, the
// innermost one.
func pathOfValueAt(root *yaml.Node, line int, kind yaml.Kind) string {
	best, bestScore := "", -1
	walk(root, "", func(path string, k, v *yaml.Node) bool {
		if v.Line != line && (k == nil || k.Line != line) {
			return false
		}
		score := len(path)
		if kind == 0 || v.Kind == kind {
			score += 2000
		}
		if k != nil {
			score += 1000
		}
		if score > bestScore {
			best, bestScore = path, score
		}
		return false
	})
	return best
}

func walk(n *yaml.Node, path string, fn func(path string, key, val *yaml.Node) bool) bool {
	if n == nil {
		return false
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if walk(c, path, fn) {
				return true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if strings.ContainsAny(k.Value, "./[]") {
				p = path + "[" + k.Value + "]"
			}
			if fn(p, k, v) || walk(v, p, fn) {
				return true
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			if fn(p, nil, c) || walk(c, p, fn) {
				return true
			}
		}
	}
	return false
}
