package api

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// queryParser reads URL query parameters strictly: unknown parameters,
// repeated single-valued parameters and malformed values are errors, and
// all of them are collected so one 400 names every problem.
type queryParser struct {
	values  url.Values
	invalid []InvalidParam
}

// maxParamLen bounds any single parameter value; no legitimate id, time or
// cursor is this long, and it keeps error messages and logs small.
const maxParamLen = 1024

// parseQuery parses raw (the URL's RawQuery) and checks that only allowed
// parameter names occur.
func parseQuery(raw string, allowed ...string) *queryParser {
	q := &queryParser{}
	v, err := url.ParseQuery(raw)
	if err != nil {
		q.add("(query)", "malformed query string: "+err.Error())
		return q
	}
	q.values = v
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(allowed, name) {
			q.add(name, fmt.Sprintf("unknown parameter (allowed: %s)", strings.Join(allowed, ", ")))
			continue
		}
		for _, val := range v[name] {
			if len(val) > maxParamLen {
				q.add(name, fmt.Sprintf("value longer than %d bytes", maxParamLen))
				break
			}
		}
	}
	return q
}

func (q *queryParser) add(name, reason string) {
	q.invalid = append(q.invalid, InvalidParam{Name: printable(name), Reason: reason})
}

// printable makes a parameter name safe to echo back: it quotes names with
// control or non-ASCII characters and bounds their length.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// str returns the single value of name, or "" when absent.
func (q *queryParser) str(name string) string {
	vs := q.values[name]
	switch len(vs) {
	case 0:
		return ""
	case 1:
		if vs[0] == "" {
			q.add(name, "empty value")
		}
		return vs[0]
	default:
		q.add(name, "given more than once")
		return vs[0]
	}
}

// strs returns all values of a repeatable parameter.
func (q *queryParser) strs(name string) []string {
	vs := q.values[name]
	for _, v := range vs {
		if v == "" {
			q.add(name, "empty value")
			break
		}
	}
	return vs
}

// time parses an RFC 3339 timestamp; ok is false when absent or invalid.
func (q *queryParser) time(name string) (time.Time, bool) {
	s := q.str(name)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		q.add(name, "not an RFC 3339 timestamp such as 2026-01-02T15:04:05Z")
		return time.Time{}, false
	}
	return t.UTC(), true
}

// duration parses a Go duration ("90s", "5m", "1h").
func (q *queryParser) duration(name string) (time.Duration, bool) {
	s := q.str(name)
	if s == "" {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		q.add(name, "not a duration such as 30s, 5m or 1h")
		return 0, false
	}
	return d, true
}

// intIn parses an integer in [lo, hi], returning def when absent.
func (q *queryParser) intIn(name string, def, lo, hi int) int {
	s := q.str(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		q.add(name, "not an integer")
		return def
	}
	if n < lo || n > hi {
		q.add(name, fmt.Sprintf("must be between %d and %d", lo, hi))
		return def
	}
	return n
}

// enum returns the value of name when it is one of allowed, def when absent.
func (q *queryParser) enum(name, def string, allowed ...string) string {
	s := q.str(name)
	if s == "" {
		return def
	}
	if !slices.Contains(allowed, s) {
		q.add(name, "must be one of "+strings.Join(allowed, ", "))
		return def
	}
	return s
}

// page reads cursor and limit.
func (q *queryParser) page(l Limits) Page {
	return Page{
		Cursor: q.str("cursor"),
		Limit:  q.intIn("limit", l.PageDefault, 1, l.PageMax),
	}
}

// problem returns the 400 to send, or nil when every parameter was fine.
func (q *queryParser) problem() *Problem {
	if len(q.invalid) == 0 {
		return nil
	}
	parts := make([]string, len(q.invalid))
	for i, p := range q.invalid {
		parts[i] = p.Name + ": " + p.Reason
	}
	return &Problem{
		Type:          ProblemBadRequest,
		Status:        400,
		Title:         "Invalid query parameters",
		Detail:        strings.Join(parts, "; "),
		InvalidParams: q.invalid,
	}
}

// Aggregations accepted by the readings endpoint.
var aggregations = []string{"avg", "min", "max", "count", "last"}

// parseReadingsQuery reads from, to, step, agg, cursor and limit of
// GET /api/v1/sensors/{id}/readings. Defaults: to = now, from = to − 1h,
// agg = avg when step is given. Step needs to be at least one second and
// the range may hold at most l.MaxBuckets buckets.
func parseReadingsQuery(raw string, now time.Time, l Limits) (ReadingsQuery, Page, *Problem) {
	q := parseQuery(raw, "from", "to", "step", "agg", "cursor", "limit")
	var rq ReadingsQuery
	to, ok := q.time("to")
	if !ok {
		to = now.UTC()
	}
	from, ok := q.time("from")
	if !ok {
		from = to.Add(-time.Hour)
	}
	rq.From, rq.To = from, to
	step, hasStep := q.duration("step")
	agg := q.enum("agg", "", aggregations...)
	page := q.page(l)
	if len(q.invalid) == 0 {
		if !from.Before(to) {
			q.add("from", "must be before to")
		}
		switch {
		case hasStep && step < time.Second:
			q.add("step", "must be at least 1s")
		case hasStep:
			span := to.Sub(from)
			n := span / step
			if span%step != 0 {
				n++
			}
			if n > time.Duration(l.MaxBuckets) {
				q.add("step", fmt.Sprintf("range %s / step %s gives more than %d buckets", span, step, l.MaxBuckets))
			}
			if agg == "" {
				agg = "avg"
			}
		case agg != "":
			q.add("agg", "needs step")
		}
	}
	if p := q.problem(); p != nil {
		return ReadingsQuery{}, Page{}, p
	}
	rq.Step, rq.Agg = step, agg
	return rq, page, nil
}
