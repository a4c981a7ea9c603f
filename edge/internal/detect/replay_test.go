package detect

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/models/artifact"
	"github.com/smartmaint/smartmaint/models/eval"
	"github.com/smartmaint/smartmaint/models/train"
)

// pumpCSV renders a labelled pump series as a score input file.
func pumpCSV(t testing.TB, seed uint64, n int, faults []eval.Fault) (string, eval.Dataset) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	spec := eval.PumpSpec("pump", time.Minute)
	d := eval.Generate(spec, rng, eval.SuiteStart, n, 200, faults)
	var b strings.Builder
	b.WriteString("timestamp")
	for _, c := range spec.Channels {
		b.WriteString("," + c.Name)
	}
	b.WriteByte('\n')
	for i, r := range d.Rows {
		b.WriteString(time.Unix(0, d.Times[i]).UTC().Format("2006-01-02 15:04:05"))
		for _, v := range r {
			b.WriteByte(',')
			b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		}
		b.WriteByte('\n')
	}
	return b.String(), d
}

type outRow struct {
	ts    string
	score string
	label string
}

func parseOut(t testing.TB, s string) []outRow {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if lines[0] != "timestamp,anomaly_score,label" {
		t.Fatalf("header %q", lines[0])
	}
	var out []outRow
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) != 3 {
			t.Fatalf("row %q", l)
		}
		out = append(out, outRow{f[0], f[1], f[2]})
	}
	return out
}

func score(t testing.TB, in string, o ReplayOptions) ([]outRow, ReplayStats) {
	t.Helper()
	var out bytes.Buffer
	st, err := ScoreCSV(context.Background(), strings.NewReader(in), &out, o)
	if err != nil {
		t.Fatal(err)
	}
	return parseOut(t, out.String()), st
}

func TestScoreCSVDetectsFaultsAndIsBounded(t *testing.T) {
	faults := []eval.Fault{
		{Kind: eval.Spike, Channel: 2, Start: 900, Len: 1, Magnitude: 12},
		{Kind: eval.Stuck, Channel: 0, Start: 1500, Len: 200},
	}
	in, d := pumpCSV(t, 7, 2400, faults)
	for _, det := range []string{"", models.NameMAD, models.NameEWMA, models.NameStuck, models.NamePCA} {
		t.Run("detector="+det, func(t *testing.T) {
			rows, st := score(t, in, ReplayOptions{Detector: det, TrainRows: 200})
			if len(rows) != len(d.Rows) || st.Rows != len(d.Rows) {
				t.Fatalf("%d output rows for %d input rows", len(rows), len(d.Rows))
			}
			for i, r := range rows {
				if want := time.Unix(0, d.Times[i]).UTC().Format("2006-01-02 15:04:05"); r.ts != want {
					t.Fatalf("row %d: timestamp %q, want %q", i, r.ts, want)
				}
				if i < 200 {
					if r.score != "" || r.label != "" {
						t.Fatalf("training row %d scored: %+v", i, r)
					}
					continue
				}
				s, err := strconv.ParseFloat(r.score, 64)
				if err != nil || s < 0 || s > 1 {
					t.Fatalf("row %d: score %q not in [0,1]", i, r.score)
				}
				if r.label != "0" && r.label != "1" {
					t.Fatalf("row %d: label %q", i, r.label)
				}
			}
		})
	}
	// The default ensemble must catch the spike at once and the stuck
	// value within its span.
	rows, _ := score(t, in, ReplayOptions{TrainRows: 200})
	if rows[900].label != "1" {
		t.Errorf("spike at row 900 not flagged: %+v", rows[900])
	}
	caught := false
	for i := 1500; i < 1700; i++ {
		caught = caught || rows[i].label == "1"
	}
	if !caught {
		t.Error("stuck value in rows 1500–1700 not flagged")
	}
}

func TestScoreCSVNoLookAheadAndDeterministic(t *testing.T) {
	in, _ := pumpCSV(t, 3, 1200, []eval.Fault{{Kind: eval.Step, Channel: 1, Start: 700, Len: 100, Magnitude: 5}})
	base, _ := score(t, in, ReplayOptions{})
	again, _ := score(t, in, ReplayOptions{})
	if diff := cmp.Diff(base, again, cmp.AllowUnexported(outRow{})); diff != "" {
		t.Fatalf("not deterministic:\n%s", diff)
	}
	// Perturb every value after row k: rows ≤ k must score the same.
	const k = 800
	lines := strings.Split(in, "\n")
	for i := k + 2; i < len(lines)-1; i++ {
		f := strings.Split(lines[i], ",")
		for j := 1; j < len(f); j++ {
			f[j] = "1e6"
		}
		lines[i] = strings.Join(f, ",")
	}
	pert, _ := score(t, strings.Join(lines, "\n"), ReplayOptions{})
	if diff := cmp.Diff(base[:k+1], pert[:k+1], cmp.AllowUnexported(outRow{})); diff != "" {
		t.Fatalf("future rows changed past scores:\n%s", diff)
	}
	if cmp.Equal(base[k+1:], pert[k+1:], cmp.AllowUnexported(outRow{})) {
		t.Fatal("perturbation had no effect at all; test is not testing anything")
	}
}

func TestScoreCSVBadInput(t *testing.T) {
	in := "time;a;b\n" +
		"2026-01-01T00:00:00Z;1;2\n" +
		"2026-01-01 00:01:00;1.5;\n" + // empty cell: missing, no warning
		"yesterday;1;2\n" + // bad timestamp
		"2026-01-01 00:03:00;abc;2\n" + // bad cell
		"2026-01-01 00:04:00;1\n" + // short row
		"2026-01-01 00:05:00;NaN;2\n"
	var warns []string
	var out bytes.Buffer
	st, err := ScoreCSV(context.Background(), strings.NewReader(in), &out, ReplayOptions{Warn: func(m string) { warns = append(warns, m) }})
	if err != nil {
		t.Fatal(err)
	}
	rows := parseOut(t, out.String())
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rows))
	}
	want := []string{
		"line 4 column 1: timestamp \"yesterday\" is neither RFC 3339 nor YYYY-MM-DD HH:MM:SS; row not scored",
		"line 5 column 21 (a): \"abc\" is not a number; treated as missing",
		"line 6: 2 fields, header has 3; row not scored",
	}
	if diff := cmp.Diff(want, warns); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if st.BadRows != 2 || st.BadCells != 1 {
		t.Errorf("stats %+v", st)
	}
	if rows[2].score != "" || rows[4].score != "" || rows[0].score == "" {
		t.Errorf("rows %+v", rows)
	}
}

func TestScoreCSVRejectsBadHeaderAndQuotes(t *testing.T) {
	for _, in := range []string{"timestamp\n2026-01-01 00:00:00\n", "t,a,a\n", "t,a\n2026-01-01 00:00:00,\"1\n"} {
		var out bytes.Buffer
		if _, err := ScoreCSV(context.Background(), strings.NewReader(in), &out, ReplayOptions{}); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestScoreCSVWithSignedModel(t *testing.T) {
	in, d := pumpCSV(t, 11, 1500, []eval.Fault{{Kind: eval.Step, Channel: 1, Start: 1000, Len: 300, Magnitude: 40}})
	names := []string{"vibration", "current", "pressure", "temperature"}
	m, err := train.Fit(d.Rows[:600], train.Options{Kind: models.NamePCA, Name: "pump", Version: "1", Sensors: names, Times: d.Times[:600], Now: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	data, err := artifact.Encode(m, key)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := artifact.Decode(data, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := models.FromArtifact(got)
	if err != nil {
		t.Fatal(err)
	}
	rows, st := score(t, in, ReplayOptions{Model: b, TrainRows: 600})
	if st.Ref != "pump@1" {
		t.Errorf("ref %q", st.Ref)
	}
	hit, before := 0, 0
	for i := 600; i < 1300; i++ {
		if rows[i].label == "1" {
			if i >= 1000 {
				hit++
			} else {
				before++
			}
		}
	}
	// PCA is no specialist for a step on one channel (QUALITY.md), but a
	// step of this size breaks the relationship clearly.
	if hit < 30 || before > 20 {
		t.Errorf("PCA flagged %d of 300 rows of a large current step and %d of 400 normal rows", hit, before)
	}
	// A model for other channels is refused with a clear error.
	b.Sensors = []string{"a", "b", "c", "d"}
	var out bytes.Buffer
	_, err = ScoreCSV(context.Background(), strings.NewReader(in), &out, ReplayOptions{Model: b})
	if err == nil || !strings.Contains(err.Error(), `model channel "a" is not a column`) {
		t.Errorf("err = %v", err)
	}
}

func ExampleScoreCSV() {
	in := "timestamp,temp\n"
	for i := 0; i < 5; i++ {
		in += fmt.Sprintf("2026-01-01 00:0%d:00,%d\n", i, 20+i%2)
	}
	var out bytes.Buffer
	_, _ = ScoreCSV(context.Background(), strings.NewReader(in), &out, ReplayOptions{TrainRows: 2})
	fmt.Print(out.String())
	// Output:
	// timestamp,anomaly_score,label
	// 2026-01-01 00:00:00,,
	// 2026-01-01 00:01:00,,
	// 2026-01-01 00:02:00,0.000000,0
	// 2026-01-01 00:03:00,0.000000,0
	// 2026-01-01 00:04:00,0.000000,0
}

func TestScoreCSVColumns(t *testing.T) {
	in := "datetime;a;label;b\n2026-01-01 00:00:00;1;0;2\n2026-01-01 00:01:00;1.1;1;x\n"
	var warns []string
	var out bytes.Buffer
	st, err := ScoreCSV(context.Background(), strings.NewReader(in), &out, ReplayOptions{Columns: []string{"b", "a"}, Warn: func(m string) { warns = append(warns, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if st.BadCells != 1 || len(warns) != 1 || !strings.Contains(warns[0], "line 3 column 27 (b)") {
		t.Errorf("stats %+v warnings %q", st, warns)
	}
	if _, err := ScoreCSV(context.Background(), strings.NewReader(in), &out, ReplayOptions{Columns: []string{"c"}}); err == nil || !strings.Contains(err.Error(), `no column "c"`) {
		t.Errorf("err = %v", err)
	}
}
