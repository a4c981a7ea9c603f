package detect

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/models"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// ReplayOptions configure ScoreCSV.
type ReplayOptions struct {
	// Detector is a built-in name (models.Builtins() or "pca"); ignored
	// when Model is set. Empty means the default ensemble.
	Detector string
	// Model is a verified model to score with (nil: Detector).
	Model *models.Built
	// TrainRows at the start only fit and calibrate; they get empty scores.
	TrainRows int
	// Columns selects the channels to score by header name, in this order
	// (nil: every column after the timestamp). Other columns, such as
	// label columns of a benchmark file, are ignored.
	Columns []string
	// Delimiter of the CSV; 0 detects ',' or ';' from the header.
	Delimiter rune
	// Warn receives one line per bad cell or row (may be nil).
	Warn func(msg string)
}

// ReplayStats summarise a replay.
type ReplayStats struct {
	Rows, Scored, Anomalous int
	// BadRows had an unparseable timestamp or the wrong number of fields;
	// BadCells an unparseable value (scored as missing).
	BadRows, BadCells int
	Elapsed           time.Duration
	Ref               string
}

// timestamp layouts accepted in the first column.
const (
	layoutSpace = "2006-01-02 15:04:05.999999999"
	layoutT     = "2006-01-02T15:04:05.999999999"
)

func parseTime(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixNano(), nil
	}
	for _, l := range []string{layoutSpace, layoutT} {
		if t, err := time.Parse(l, s); err == nil {
			return t.UnixNano(), nil
		}
	}
	return 0, fmt.Errorf("timestamp %q is neither RFC 3339 nor YYYY-MM-DD HH:MM:SS", s)
}

func parseValue(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "nan", "null", "na", "n/a", "none":
		return math.NaN(), true
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return math.NaN(), false
	}
	return v, true
}

// collector is the Next stage of a replay: it keeps the last batch.
type collector struct{ rs []wire.Reading }

func (c *collector) Write(_ context.Context, rs []wire.Reading) error {
	c.rs = append(c.rs[:0], rs...)
	return nil
}
func (c *collector) WriteEvents(context.Context, []wire.Event) error { return nil }

// ScoreCSV replays a CSV (header; timestamp first, then one numeric column
// per sensor of one asset) through the scoring stage, exactly as the live
// agent scores, and writes `timestamp,anomaly_score,label` for every input
// row in order. The score of a row depends only on rows up to it.
func ScoreCSV(ctx context.Context, in io.Reader, out io.Writer, o ReplayOptions) (ReplayStats, error) {
	start := time.Now()
	var st ReplayStats
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	br := bufio.NewReaderSize(in, 1<<16)
	delim := o.Delimiter
	if delim == 0 {
		head, _ := br.Peek(4096)
		line, _, _ := strings.Cut(string(head), "\n")
		delim = ','
		if !strings.Contains(line, ",") && strings.Contains(line, ";") {
			delim = ';'
		}
	}
	r := csv.NewReader(br)
	r.Comma = delim
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return st, fmt.Errorf("read header: %w", err)
	}
	if len(header) < 2 {
		return st, fmt.Errorf("line 1: header needs a timestamp column and at least one channel, got %d column(s)", len(header))
	}
	names := make([]string, len(header)-1)
	seen := map[string]int{}
	for i, h := range header[1:] {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if h == "" {
			h = fmt.Sprintf("column%d", i+2)
		}
		if j, dup := seen[h]; dup {
			return st, fmt.Errorf("line 1: column %d: channel %q repeats column %d", i+2, h, j)
		}
		seen[h] = i + 2
		names[i] = h
	}
	// cols are the record indexes of the scored channels.
	cols := make([]int, len(names))
	for i := range cols {
		cols[i] = i + 1
	}
	if len(o.Columns) > 0 {
		cols, names = cols[:0], names[:0:0]
		for _, c := range o.Columns {
			j, ok := seen[c]
			if !ok {
				return st, fmt.Errorf("line 1: no column %q in the header", c)
			}
			cols = append(cols, j-1)
			names = append(names, c)
		}
	}
	w := len(names)

	// Model set: a univariate default plus, for several columns, one asset
	// group over all of them.
	var set *ModelSet
	var trainPCA bool
	detector := o.Detector
	if detector == "" {
		detector = models.NameEnsemble
	}
	switch {
	case o.Model != nil && o.Model.NewRow != nil:
		if err := matchColumns(o.Model.Sensors, names); err != nil {
			return st, err
		}
		if mw := o.Model.NewRow().Width(); mw != w {
			return st, fmt.Errorf("model %s expects %d channels, the file has %d", o.Model.Ref, mw, w)
		}
		def, _ := Builtin(models.NameEnsemble)
		set = &ModelSet{Default: def.Default, Assets: []AssetGroup{{Name: "asset", Sensors: modelOrder(o.Model.Sensors, names), Row: o.Model.NewRow, Ref: o.Model.Ref, RowOnly: true}}}
	case o.Model != nil:
		set = &ModelSet{Default: o.Model}
	case detector == models.NamePCA:
		if w < 2 {
			return st, errors.New("detector pca needs at least two channel columns")
		}
		if o.TrainRows < 2*w+10 {
			return st, fmt.Errorf("detector pca needs --train-rows ≥ %d for %d channels", 2*w+10, w)
		}
		trainPCA = true
	default:
		set, err = Builtin(detector)
		if err != nil {
			return st, err
		}
		if w > 1 && detector == models.NameEnsemble {
			warm := o.TrainRows
			if warm <= 0 {
				warm = 500
			}
			set.Assets = []AssetGroup{{Name: "asset", Sensors: names, Ref: set.Default.Ref,
				Row: func() models.RowDetector { return models.NewOnlinePCA(w, warm, models.DefaultPCAConfig()) }}}
		} else if w > 1 {
			set.Assets = []AssetGroup{{Name: "asset", Sensors: names, Ref: set.Default.Ref}}
		}
	}
	col := &collector{}
	var stage *Stage
	if set != nil {
		stage, err = New(col, nil, set, EventConfig{MinReadings: 1 << 30}, nil)
		if err != nil {
			return st, err
		}
		st.Ref = set.Default.Ref
		if len(set.Assets) > 0 && set.Assets[0].Ref != "" {
			st.Ref = set.Assets[0].Ref
		}
	}
	var trainBuf [][]float64

	bw := bufio.NewWriterSize(out, 1<<16)
	if _, err := bw.WriteString("timestamp,anomaly_score,label\n"); err != nil {
		return st, err
	}
	rs := make([]wire.Reading, w)
	for i := range rs {
		rs[i].Sensor = names[i]
	}
	var line []byte
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return st, fmt.Errorf("line %d column %d: %w", pe.Line, pe.Column, pe.Err)
			}
			return st, fmt.Errorf("after line %d: %w", st.Rows+1, err)
		}
		ln, _ := r.FieldPos(0)
		st.Rows++
		rowNo := st.Rows
		tsText := strings.TrimSpace(rec[0])
		line = append(line[:0], csvField(tsText)...)
		if len(rec) != len(header) {
			st.BadRows++
			warn(fmt.Sprintf("line %d: %d fields, header has %d; row not scored", ln, len(rec), len(header)))
			line = append(line, ",,\n"...)
			if _, err := bw.Write(line); err != nil {
				return st, err
			}
			continue
		}
		t, terr := parseTime(tsText)
		if terr != nil {
			st.BadRows++
			warn(fmt.Sprintf("line %d column 1: %v; row not scored", ln, terr))
			line = append(line, ",,\n"...)
			if _, err := bw.Write(line); err != nil {
				return st, err
			}
			continue
		}
		for i := range rs {
			v, ok := parseValue(rec[cols[i]])
			if !ok {
				st.BadCells++
				_, c := r.FieldPos(cols[i])
				warn(fmt.Sprintf("line %d column %d (%s): %q is not a number; treated as missing", ln, c, names[i], rec[cols[i]]))
			}
			rs[i].Time, rs[i].Value, rs[i].Score, rs[i].Flags, rs[i].Model = t, v, 0, 0, ""
		}
		if trainPCA {
			if rowNo <= o.TrainRows {
				x := make([]float64, w)
				for i := range rs {
					x[i] = rs[i].Value
				}
				trainBuf = append(trainBuf, x)
				line = append(line, ",,\n"...)
				if _, err := bw.Write(line); err != nil {
					return st, err
				}
				if rowNo == o.TrainRows {
					p, err := models.TrainPCA(trainBuf, models.DefaultPCAConfig())
					if err != nil {
						return st, fmt.Errorf("fit pca on the first %d rows: %w", o.TrainRows, err)
					}
					params := p.Params()
					def, _ := Builtin(models.NameEnsemble)
					set = &ModelSet{Default: def.Default, Assets: []AssetGroup{{Name: "asset", Sensors: names, RowOnly: true, Ref: "pca@fitted",
						Row: func() models.RowDetector { d, _ := models.NewPCA(params); return d }}}}
					stage, err = New(col, nil, set, EventConfig{MinReadings: 1 << 30}, nil)
					if err != nil {
						return st, err
					}
					st.Ref = "pca@fitted"
					trainBuf = nil
				}
				continue
			}
		}
		if err := stage.Write(ctx, rs); err != nil {
			return st, err
		}
		if rowNo <= o.TrainRows {
			line = append(line, ",,\n"...)
		} else {
			score, anom := 0.0, false
			for i := range col.rs {
				score = math.Max(score, float64(col.rs[i].Score))
				anom = anom || col.rs[i].Flags&wire.FlagAnomaly != 0
			}
			st.Scored++
			line = append(line, ',')
			line = strconv.AppendFloat(line, score, 'f', 6, 64)
			if anom {
				st.Anomalous++
				line = append(line, ",1\n"...)
			} else {
				line = append(line, ",0\n"...)
			}
		}
		if _, err := bw.Write(line); err != nil {
			return st, err
		}
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

func csvField(s string) string {
	if strings.ContainsAny(s, ",\"\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// matchColumns checks that a row model's sensors are exactly the CSV's
// channels (in any order); a model without sensor names takes the columns
// in file order.
func matchColumns(model, names []string) error {
	if len(model) == 0 {
		return nil
	}
	if len(model) != len(names) {
		return fmt.Errorf("model expects %d channels %v, the file has %d %v", len(model), model, len(names), names)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	for _, m := range model {
		if !have[m] {
			return fmt.Errorf("model channel %q is not a column of the file (columns: %v)", m, names)
		}
	}
	return nil
}

func modelOrder(model, names []string) []string {
	if len(model) == 0 {
		return names
	}
	return model
}
