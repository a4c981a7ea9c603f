package mapping

import (
	"encoding/json"
	"errors"
	"strconv"
)

// A small JSON scanner that finds values at dotted paths without building
// a document tree, so that decoding a reading costs no allocations beyond
// the reading itself. It validates what it walks over; malformed input
// yields errBadJSON, never a panic.

var errBadJSON = errors.New("malformed JSON")

// maxJSONDepth bounds nesting so hostile payloads cannot exhaust the stack.
const maxJSONDepth = 64

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(d []byte, i int) int {
	for i < len(d) && isWS(d[i]) {
		i++
	}
	return i
}

// scanValue returns the end of the JSON value starting at d[i] (no leading
// whitespace).
func scanValue(d []byte, i, depth int) (int, error) {
	if i >= len(d) {
		return 0, errBadJSON
	}
	if depth > maxJSONDepth {
		return 0, errBadJSON
	}
	switch c := d[i]; {
	case c == '{':
		i = skipWS(d, i+1)
		if i < len(d) && d[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(d) || d[i] != '"' {
				return 0, errBadJSON
			}
			end, err := scanString(d, i)
			if err != nil {
				return 0, err
			}
			i = skipWS(d, end)
			if i >= len(d) || d[i] != ':' {
				return 0, errBadJSON
			}
			i = skipWS(d, i+1)
			if i, err = scanValue(d, i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(d, i)
			if i >= len(d) {
				return 0, errBadJSON
			}
			if d[i] == '}' {
				return i + 1, nil
			}
			if d[i] != ',' {
				return 0, errBadJSON
			}
			i = skipWS(d, i+1)
		}
	case c == '[':
		i = skipWS(d, i+1)
		if i < len(d) && d[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = scanValue(d, i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(d, i)
			if i >= len(d) {
				return 0, errBadJSON
			}
			if d[i] == ']' {
				return i + 1, nil
			}
			if d[i] != ',' {
				return 0, errBadJSON
			}
			i = skipWS(d, i+1)
		}
	case c == '"':
		return scanString(d, i)
	case c == 't':
		return scanLit(d, i, "true")
	case c == 'f':
		return scanLit(d, i, "false")
	case c == 'n':
		return scanLit(d, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		j := i
		for j < len(d) && (d[j] >= '0' && d[j] <= '9' || d[j] == '-' || d[j] == '+' || d[j] == '.' || d[j] == 'e' || d[j] == 'E') {
			j++
		}
		return j, nil
	}
	return 0, errBadJSON
}

func scanLit(d []byte, i int, lit string) (int, error) {
	if len(d)-i < len(lit) || string(d[i:i+len(lit)]) != lit {
		return 0, errBadJSON
	}
	return i + len(lit), nil
}

// scanString returns the end (after the closing quote) of the string at d[i].
func scanString(d []byte, i int) (int, error) {
	for j := i + 1; j < len(d); j++ {
		switch d[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		default:
			if d[j] < 0x20 {
				return 0, errBadJSON
			}
		}
	}
	return 0, errBadJSON
}

// jsonLookup returns the raw value at path (object keys, or decimal indexes
// into arrays) inside the JSON value v. found is false when a step does not
// exist; err is set when v is malformed along the way.
func jsonLookup(v []byte, path []string) (raw []byte, found bool, err error) {
	v = trimWS(v)
	for _, key := range path {
		if len(v) == 0 {
			return nil, false, errBadJSON
		}
		switch v[0] {
		case '{':
			i := skipWS(v, 1)
			if i < len(v) && v[i] == '}' {
				return nil, false, nil
			}
			var next []byte
			for next == nil {
				if i >= len(v) || v[i] != '"' {
					return nil, false, errBadJSON
				}
				kend, err := scanString(v, i)
				if err != nil {
					return nil, false, err
				}
				k := v[i+1 : kend-1]
				i = skipWS(v, kend)
				if i >= len(v) || v[i] != ':' {
					return nil, false, errBadJSON
				}
				i = skipWS(v, i+1)
				vend, err := scanValue(v, i, 1)
				if err != nil {
					return nil, false, err
				}
				if string(k) == key {
					next = v[i:vend]
					break
				}
				i = skipWS(v, vend)
				if i >= len(v) {
					return nil, false, errBadJSON
				}
				if v[i] == '}' {
					return nil, false, nil
				}
				if v[i] != ',' {
					return nil, false, errBadJSON
				}
				i = skipWS(v, i+1)
			}
			v = next
		case '[':
			idx, err := strconv.Atoi(key)
			if err != nil || idx < 0 {
				return nil, false, nil
			}
			found := false
			err = eachElem(v, func(n int, e []byte) bool {
				if n == idx {
					v, found = e, true
					return false
				}
				return true
			})
			if err != nil {
				return nil, false, err
			}
			if !found {
				return nil, false, nil
			}
		default:
			return nil, false, nil
		}
	}
	return v, true, nil
}

func trimWS(v []byte) []byte {
	i := skipWS(v, 0)
	j := len(v)
	for j > i && isWS(v[j-1]) {
		j--
	}
	return v[i:j]
}

// eachElem calls fn for each element of the JSON array v until fn returns
// false.
func eachElem(v []byte, fn func(n int, elem []byte) bool) error {
	if len(v) == 0 || v[0] != '[' {
		return errBadJSON
	}
	i := skipWS(v, 1)
	if i < len(v) && v[i] == ']' {
		return nil
	}
	for n := 0; ; n++ {
		end, err := scanValue(v, i, 1)
		if err != nil {
			return err
		}
		if !fn(n, v[i:end]) {
			return nil
		}
		i = skipWS(v, end)
		if i >= len(v) {
			return errBadJSON
		}
		if v[i] == ']' {
			return nil
		}
		if v[i] != ',' {
			return errBadJSON
		}
		i = skipWS(v, i+1)
	}
}

// jsonString returns the content of the JSON string literal raw,
// unescaping only when it contains escapes.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", false
			}
			return s, true
		}
	}
	return string(inner), true
}

// jsonFields finds several paths in one pass over the object obj: out[i]
// gets the raw value at paths[i] (nil when absent; nil paths are skipped).
// Duplicate keys: the last one wins, like encoding/json.
func jsonFields(obj []byte, paths *[4][]string, out *[4][]byte) error {
	*out = [4][]byte{}
	if len(obj) == 0 || obj[0] != '{' {
		return errBadJSON
	}
	i := skipWS(obj, 1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return errBadJSON
		}
		kend, err := scanString(obj, i)
		if err != nil {
			return err
		}
		k := obj[i+1 : kend-1]
		i = skipWS(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return errBadJSON
		}
		i = skipWS(obj, i+1)
		vend, err := scanValue(obj, i, 1)
		if err != nil {
			return err
		}
		for p := range paths {
			path := paths[p]
			if len(path) == 0 || string(k) != path[0] {
				continue
			}
			if len(path) == 1 {
				out[p] = obj[i:vend]
				continue
			}
			raw, found, err := jsonLookup(obj[i:vend], path[1:])
			if err != nil {
				return err
			}
			if found {
				out[p] = raw
			}
		}
		i = skipWS(obj, vend)
		if i >= len(obj) {
			return errBadJSON
		}
		if obj[i] == '}' {
			return nil
		}
		if obj[i] != ',' {
			return errBadJSON
		}
		i = skipWS(obj, i+1)
	}
}
