package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// marks are the one-character marks of the text report.
var marks = map[Status]string{OK: "✓", Warn: "!", Fail: "✗", Skip: "-"}

// WriteText writes one line per check (mark, name, detail), with the
// detail's further lines and the hint indented below it, then a summary.
func (r Report) WriteText(w io.Writer) error {
	width := 0
	for _, res := range r.Results {
		width = max(width, len(res.Name))
	}
	var b strings.Builder
	for _, res := range r.Results {
		lines := strings.Split(res.Detail, "\n")
		fmt.Fprintf(&b, "%s %-*s  %s\n", marks[res.Status], width, res.Name, lines[0])
		pad := strings.Repeat(" ", width+4)
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "%s%s\n", pad, l)
		}
		if res.Hint != "" {
			fmt.Fprintf(&b, "%s→ %s\n", pad, res.Hint)
		}
	}
	fmt.Fprintf(&b, "\n%d check(s): %d failed, %d warning(s)\n", len(r.Results), r.Failed(), r.Warnings())
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one JSON document for scripts.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Report
		Failed   int `json:"failed"`
		Warnings int `json:"warnings"`
	}{r, r.Failed(), r.Warnings()})
}
