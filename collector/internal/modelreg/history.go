package modelreg

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Table is training data: one row per timestamp, one column per sensor,
// NaN where a value is missing.
type Table struct {
	Sensors []string
	Times   []int64 // Unix ns, ascending
	Rows    [][]float64
	// Skipped describes input problems that were skipped (bad cells
	// become missing values; bad rows are dropped), at most maxProblems.
	Skipped []string
	// SkippedCount counts all of them.
	SkippedCount int
}

// maxProblems bounds the problems kept verbatim; the count is exact.
const maxProblems = 20

func (t *Table) skip(format string, args ...any) {
	t.SkippedCount++
	if len(t.Skipped) < maxProblems {
		t.Skipped = append(t.Skipped, fmt.Sprintf(format, args...))
	}
}

// timestamp layouts accepted in the first column, as in `sm-edge score`.
var csvTimeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"}

func parseCSVTime(s string) (int64, error) {
	s = strings.TrimSpace(s)
	for _, l := range csvTimeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UnixNano(), nil
		}
	}
	return 0, fmt.Errorf("timestamp %q is neither RFC 3339 nor YYYY-MM-DD HH:MM:SS", s)
}

// ReadCSV reads training data in the `sm-edge score` input format: a
// header line, the timestamp in the first column, one numeric column per
// sensor, separated by ',' or ';'. Empty, "nan" and "null" cells are missing values. A cell that
// is not a number becomes missing and a row with a bad timestamp or out
// of time order is dropped; both are listed in Table.Skipped with
// name:line so the rest of the file is still used. progress, if not nil,
// is called every 100 000 rows.
func ReadCSV(r io.Reader, name string, progress func(rows int)) (*Table, error) {
	br := bufio.NewReader(r)
	cr := csv.NewReader(br)
	// The delimiter (',' or ';') is detected from the header, as in
	// `sm-edge score`.
	if head, _ := br.Peek(br.Size()); len(head) > 0 {
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			head = head[:i]
		}
		if bytes.Count(head, []byte(";")) > bytes.Count(head, []byte(",")) {
			cr.Comma = ';'
		}
	}
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file, want a header line", name)
		}
		return nil, fmt.Errorf("%s:1: %w", name, err)
	}
	if len(head) < 2 {
		return nil, fmt.Errorf("%s:1: header has %d column(s), want a timestamp and at least one sensor", name, len(head))
	}
	t := &Table{}
	seen := map[string]bool{}
	for i, h := range head[1:] {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("%s:1: column %d has no name", name, i+2)
		}
		if seen[h] {
			return nil, fmt.Errorf("%s:1: column %q appears twice", name, h)
		}
		seen[h] = true
		t.Sensors = append(t.Sensors, h)
	}
	w := len(t.Sensors)
	var last int64 = math.MinInt64
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				t.skip("%s:%d: %v", name, pe.Line, pe.Err)
				continue
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0) // only valid after a successful Read
		if len(rec) != w+1 {
			t.skip("%s:%d: %d fields, header has %d", name, line, len(rec), w+1)
			continue
		}
		ts, err := parseCSVTime(rec[0])
		if err != nil {
			t.skip("%s:%d: %v", name, line, err)
			continue
		}
		if ts <= last {
			t.skip("%s:%d: timestamp %s is not after the previous row", name, line, strings.TrimSpace(rec[0]))
			continue
		}
		last = ts
		row := make([]float64, w)
		for i, cell := range rec[1:] {
			v, ok := parseCell(cell)
			if !ok {
				t.skip("%s:%d: column %q: %q is not a number (treated as missing)", name, line, t.Sensors[i], cell)
			}
			row[i] = v
		}
		t.Times = append(t.Times, ts)
		t.Rows = append(t.Rows, row)
		if progress != nil && len(t.Rows)%100000 == 0 {
			progress(len(t.Rows))
		}
	}
	if len(t.Rows) == 0 {
		return nil, fmt.Errorf("%s: no usable data rows (%d skipped)", name, t.SkippedCount)
	}
	return t, nil
}

func parseCell(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "nan", "null", "na", "n/a", "none":
		return math.NaN(), true
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return math.NaN(), false
	}
	return v, true
}

// HistoryQuery selects stored readings for training.
type HistoryQuery struct {
	// Sensors are sensor ids (columns, in this order).
	Sensors []string
	// From (inclusive) and To (exclusive) bound the window.
	From, To time.Time
	// Step > 0 averages each sensor into buckets of Step (aligning the
	// sensors of an asset); 0 uses the raw timestamps.
	Step time.Duration
}

// maxHistoryRows bounds what one training run loads into memory
// (rows × sensors float64s): 5 million rows of a 10-sensor asset is
// 400 MB, the most a collector host should spend on one request.
const maxHistoryRows = 5_000_000

// LoadHistory reads readings from the collector's store (tables sensors
// and readings of collector/internal/store) into a Table. Quality-flagged
// readings are included as stored; missing values stay NaN.
func LoadHistory(ctx context.Context, db *pgxpool.Pool, q HistoryQuery, progress func(rows int)) (*Table, error) {
	if len(q.Sensors) == 0 {
		return nil, errors.New("history: no sensors selected")
	}
	if !q.To.After(q.From) {
		return nil, fmt.Errorf("history: window %s..%s is empty", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	col := map[string]int{}
	for i, s := range q.Sensors {
		col[s] = i
	}
	var known []string
	rows, err := db.Query(ctx, `SELECT id FROM sensors WHERE id = ANY($1)`, q.Sensors)
	if err != nil {
		return nil, fmt.Errorf("history: look up sensors: %w", err)
	}
	known, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("history: look up sensors: %w", err)
	}
	if len(known) != len(q.Sensors) {
		have := map[string]bool{}
		for _, k := range known {
			have[k] = true
		}
		var missing []string
		for _, s := range q.Sensors {
			if !have[s] {
				missing = append(missing, s)
			}
		}
		return nil, fmt.Errorf("history: unknown sensor(s): %s", strings.Join(missing, ", "))
	}
	var sql string
	args := []any{q.Sensors, q.From, q.To}
	if q.Step > 0 {
		sql = `SELECT date_bin($4::interval, r.time, TIMESTAMPTZ '2000-01-01') AS t, s.id, avg(r.value)
			FROM readings r JOIN sensors s ON s.num = r.sensor_id
			WHERE s.id = ANY($1) AND r.time >= $2 AND r.time < $3
			GROUP BY 1, 2 ORDER BY 1`
		args = append(args, q.Step.String())
	} else {
		sql = `SELECT r.time, s.id, r.value
			FROM readings r JOIN sensors s ON s.num = r.sensor_id
			WHERE s.id = ANY($1) AND r.time >= $2 AND r.time < $3
			ORDER BY r.time`
	}
	rs, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("history: query readings: %w", err)
	}
	defer rs.Close()
	t := &Table{Sensors: q.Sensors}
	var (
		ts     time.Time
		sensor string
		value  float64
	)
	for rs.Next() {
		if err := rs.Scan(&ts, &sensor, &value); err != nil {
			return nil, fmt.Errorf("history: read readings: %w", err)
		}
		ns := ts.UnixNano()
		if n := len(t.Times); n == 0 || t.Times[n-1] != ns {
			if n >= maxHistoryRows {
				return nil, fmt.Errorf("history: more than %d rows; narrow the window or set a step", maxHistoryRows)
			}
			row := make([]float64, len(q.Sensors))
			for i := range row {
				row[i] = math.NaN()
			}
			t.Times = append(t.Times, ns)
			t.Rows = append(t.Rows, row)
			if progress != nil && len(t.Rows)%100000 == 0 {
				progress(len(t.Rows))
			}
		}
		t.Rows[len(t.Rows)-1][col[sensor]] = value
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("history: read readings: %w", err)
	}
	if len(t.Rows) == 0 {
		return nil, fmt.Errorf("history: no readings for %s in %s..%s", strings.Join(q.Sensors, ", "),
			q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	return t, nil
}
