package detect

import (
	"bytes"
	"context"
	"encoding/csv"
	"strconv"
	"strings"
	"testing"
)

func FuzzScoreCSV(f *testing.F) {
	f.Add("timestamp,a\n2026-01-01 00:00:00,1\n2026-01-01 00:01:00,2\n")
	f.Add("t;a;b\n2026-01-01T00:00:00Z;1;2\nbad;x;\n")
	f.Add("timestamp,a,b\n2026-01-01 00:00:00,1\n\"2026-01-01 00:01:00\",NaN,1e308\n")
	f.Add("timestamp,a\n2026-01-01 00:00:00,\"1\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		st, err := ScoreCSV(context.Background(), strings.NewReader(in), &out, ReplayOptions{TrainRows: 1})
		if err != nil {
			return
		}
		recs, err := csv.NewReader(&out).ReadAll()
		if err != nil {
			t.Fatalf("output is not CSV: %v", err)
		}
		if len(recs) != st.Rows+1 {
			t.Fatalf("%d output records for %d rows", len(recs), st.Rows)
		}
		for _, r := range recs[1:] {
			if r[1] != "" {
				if s, err := strconv.ParseFloat(r[1], 64); err != nil || s < 0 || s > 1 {
					t.Fatalf("score %q", r[1])
				}
			}
		}
	})
}
