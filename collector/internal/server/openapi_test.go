package server

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/smartmaint/smartmaint/collector/internal/api"
)

// oaDoc is the OpenAPI document as generic JSON, for checking real
// responses against it.
type oaDoc map[string]any

func loadOA(t testing.TB) oaDoc {
	t.Helper()
	var d oaDoc
	if err := json.Unmarshal(api.OpenAPI(), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d oaDoc) resolve(node map[string]any) map[string]any {
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		var cur any = map[string]any(d)
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		node = cur.(map[string]any)
	}
}

// responseSchema finds the schema of (pattern, code, media type).
func (d oaDoc) responseSchema(pattern string, code int, media string) (map[string]any, error) {
	method, path, _ := strings.Cut(pattern, " ")
	ops, _ := d["paths"].(map[string]any)[path].(map[string]any)
	op, ok := ops[strings.ToLower(method)].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("no operation %s", pattern)
	}
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(code)].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s does not document %d", pattern, code)
	}
	resp = d.resolve(resp)
	content, _ := resp["content"].(map[string]any)
	if content == nil {
		return nil, nil // no body documented
	}
	m, ok := content[media].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s %d does not document media type %s", pattern, code, media)
	}
	return d.resolve(m["schema"].(map[string]any)), nil
}

// check reports every way v departs from schema: undocumented fields,
// missing required ones, wrong types, values outside an enum.
func (d oaDoc) check(schema map[string]any, v any, at string) []string {
	schema = d.resolve(schema)
	var types []string
	switch ty := schema["type"].(type) {
	case string:
		types = []string{ty}
	case []any:
		for _, x := range ty {
			types = append(types, x.(string))
		}
	}
	if v == nil {
		if len(types) == 0 || slices.Contains(types, "null") {
			return nil
		}
		return []string{at + ": null, documented as " + strings.Join(types, "|")}
	}
	var probs []string
	switch x := v.(type) {
	case map[string]any:
		if len(types) > 0 && !slices.Contains(types, "object") {
			return []string{at + ": object, documented as " + strings.Join(types, "|")}
		}
		props, _ := schema["properties"].(map[string]any)
		addl, _ := schema["additionalProperties"].(map[string]any)
		for k, val := range x {
			if ps, ok := props[k].(map[string]any); ok {
				probs = append(probs, d.check(ps, val, at+"."+k)...)
			} else if addl != nil {
				probs = append(probs, d.check(addl, val, at+"."+k)...)
			} else if props != nil {
				probs = append(probs, at+"."+k+": not in the document")
			}
		}
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := x[r.(string)]; !ok {
				probs = append(probs, at+"."+r.(string)+": required by the document, missing")
			}
		}
	case []any:
		if !slices.Contains(types, "array") {
			return []string{at + ": array, documented as " + strings.Join(types, "|")}
		}
		if items, ok := schema["items"].(map[string]any); ok {
			for i, it := range x {
				probs = append(probs, d.check(items, it, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case string:
		if len(types) > 0 && !slices.Contains(types, "string") {
			probs = append(probs, at+": string, documented as "+strings.Join(types, "|"))
		}
		if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, any(x)) {
			probs = append(probs, fmt.Sprintf("%s: %q not in the documented enum %v", at, x, enum))
		}
	case float64:
		if len(types) > 0 && !slices.Contains(types, "number") && !(slices.Contains(types, "integer") && x == float64(int64(x))) {
			probs = append(probs, at+": number, documented as "+strings.Join(types, "|"))
		}
	case bool:
		if len(types) > 0 && !slices.Contains(types, "boolean") {
			probs = append(probs, at+": boolean, documented as "+strings.Join(types, "|"))
		}
	}
	return probs
}

// checkResponse checks one real answer against the document.
func (d oaDoc) checkResponse(t *testing.T, pattern string, code int, contentType string, body []byte) {
	t.Helper()
	media, _, _ := strings.Cut(contentType, ";")
	schema, err := d.responseSchema(pattern, code, media)
	if err != nil {
		t.Error(err)
		return
	}
	if schema == nil || !strings.Contains(media, "json") {
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s %d: body is not JSON: %v", pattern, code, err)
		return
	}
	for _, p := range d.check(schema, v, "body") {
		t.Errorf("%s %d: %s", pattern, code, p)
	}
}

func TestDocCheckerCatchesDrift(t *testing.T) {
	d := loadOA(t)
	schema, err := d.responseSchema("GET /api/v1/edges/{id}", 200, "application/json")
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]any{"id": "e", "name": "e", "created_at": "x", "last_seen": nil, "backlog_records": 1.0,
		"backlog_bytes": 1.0, "oldest_age_seconds": 1.0, "runway_hours": 1.0, "clock_offset_ms": "fast", "colour": "red"}
	got := d.check(schema, bad, "body")
	slices.Sort(got)
	want := []string{"body.clock_offset_ms: string, documented as number", "body.colour: not in the document"}
	if !slices.Equal(got, want) {
		t.Errorf("checker found %q, want %q", got, want)
	}
}
