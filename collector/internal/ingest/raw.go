package ingest

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// The dead-letter table keeps each rejected item's raw values as JSON.
// PostgreSQL's jsonb accepts neither NaN/±Inf numbers nor NUL characters,
// and rejected items are exactly where those occur, so floats that JSON
// cannot hold are written as strings ("NaN", "+Inf", "-Inf") and text is
// made printable first (invalid UTF-8 and NUL become U+FFFD).

// jsonFloat is a float64 that marshals non-finite values as strings.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// printable returns s as valid UTF-8 without NUL.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

type rawReadingJSON struct {
	Sensor  string    `json:"sensor"`
	Time    int64     `json:"time_ns"`
	Value   jsonFloat `json:"value"`
	Quality uint8     `json:"quality"`
	Flags   uint16    `json:"flags"`
	Seq     string    `json:"seq"`
	Score   jsonFloat `json:"score"`
	Model   string    `json:"model,omitempty"`
}

func rawReading(r *wire.Reading) []byte {
	b, _ := json.Marshal(rawReadingJSON{
		Sensor: printable(r.Sensor), Time: r.Time, Value: jsonFloat(r.Value), Quality: uint8(r.Quality),
		Flags: uint16(r.Flags), Seq: strconv.FormatUint(r.Seq, 10), Score: jsonFloat(r.Score), Model: printable(r.Model),
	})
	return b
}

type rawEventJSON struct {
	Sensor      string    `json:"sensor"`
	Asset       string    `json:"asset,omitempty"`
	Kind        uint8     `json:"kind"`
	State       uint8     `json:"state"`
	Severity    uint8     `json:"severity"`
	Rule        string    `json:"rule,omitempty"`
	Time        int64     `json:"time_ns"`
	WindowStart int64     `json:"window_start_ns"`
	WindowEnd   int64     `json:"window_end_ns"`
	Value       jsonFloat `json:"value"`
	Score       jsonFloat `json:"score"`
	Threshold   jsonFloat `json:"threshold"`
	Model       string    `json:"model,omitempty"`
	Seq         string    `json:"seq"`
}

func rawEvent(e *wire.Event) []byte {
	b, _ := json.Marshal(rawEventJSON{
		Sensor: printable(e.Sensor), Asset: printable(e.Asset), Kind: uint8(e.Kind), State: uint8(e.State),
		Severity: uint8(e.Severity), Rule: printable(e.Rule), Time: e.Time, WindowStart: e.WindowStart,
		WindowEnd: e.WindowEnd, Value: jsonFloat(e.Value), Score: jsonFloat(e.Score),
		Threshold: jsonFloat(e.Threshold), Model: printable(e.Model), Seq: strconv.FormatUint(e.Seq, 10),
	})
	return b
}

type rawGapJSON struct {
	Sensor string `json:"sensor"`
	From   int64  `json:"from_ns"`
	To     int64  `json:"to_ns"`
	Count  string `json:"count"`
	Reason string `json:"reason"`
	Seq    string `json:"seq"`
}

func rawGap(g *wire.Gap) []byte {
	b, _ := json.Marshal(rawGapJSON{
		Sensor: printable(g.Sensor), From: g.From, To: g.To, Count: strconv.FormatUint(g.Count, 10),
		Reason: printable(g.Reason), Seq: strconv.FormatUint(g.Seq, 10),
	})
	return b
}

// poisonWrite dead-letters every item of b with ReasonStorageError: the
// batch is recorded (a retry gets the same answer) and the edge's queue
// moves on. The database error itself is logged by the caller.
func poisonWrite(edgeID string, b *wire.Batch) *store.BatchWrite {
	w := &store.BatchWrite{
		EdgeID: edgeID, BatchID: b.BatchID,
		FirstSeq: min(b.FirstSeq, math.MaxInt64), LastSeq: min(b.LastSeq, math.MaxInt64),
		Readings: b.Readings, Nums: make([]int32, len(b.Readings)),
		NumEvents: len(b.Events), NumGaps: len(b.Gaps),
	}
	add := func(item string, idx int, sensor string, raw []byte) {
		w.Rejected = append(w.Rejected, store.DeadLetter{Item: item, Index: idx, Sensor: printable(sensor), Reason: ReasonStorageError, Raw: raw})
		w.Rejections = append(w.Rejections, wire.Rejection{Item: item, Index: idx, Sensor: printable(sensor), Reason: ReasonStorageError})
	}
	for i := range b.Readings {
		add(wire.ItemReading, i, b.Readings[i].Sensor, rawReading(&b.Readings[i]))
	}
	for i := range b.Events {
		add(wire.ItemEvent, i, b.Events[i].Sensor, rawEvent(&b.Events[i]))
	}
	for i := range b.Gaps {
		add(wire.ItemGap, i, b.Gaps[i].Sensor, rawGap(&b.Gaps[i]))
	}
	return w
}
