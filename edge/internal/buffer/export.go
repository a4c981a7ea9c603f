package buffer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// ExportRecord is one line of `sm-edge buffer export` (JSON lines). Kind is
// "reading", "event", "gap", "dead_letter" or "corrupt"; only the fields of
// that kind are set.
type ExportRecord struct {
	Kind   string `json:"kind"`
	Seq    uint64 `json:"seq"`
	Sensor string `json:"sensor,omitempty"`
	// Time is the source timestamp (readings, events).
	Time    *time.Time `json:"time,omitempty"`
	Value   *float64   `json:"value,omitempty"`
	Quality string     `json:"quality,omitempty"`
	Flags   uint16     `json:"flags,omitempty"`
	Score   float32    `json:"score,omitempty"`
	Model   string     `json:"model,omitempty"`
	// Event fields.
	Asset       string     `json:"asset,omitempty"`
	EventKind   uint8      `json:"event_kind,omitempty"`
	State       uint8      `json:"state,omitempty"`
	Severity    string     `json:"severity,omitempty"`
	Rule        string     `json:"rule,omitempty"`
	WindowStart *time.Time `json:"window_start,omitempty"`
	WindowEnd   *time.Time `json:"window_end,omitempty"`
	Threshold   *float64   `json:"threshold,omitempty"`
	// Gap fields.
	From   *time.Time `json:"from,omitempty"`
	To     *time.Time `json:"to,omitempty"`
	Count  uint64     `json:"count,omitempty"`
	Reason string     `json:"reason,omitempty"`
	// Dead-letter fields: when and why, and the encoded batch as sent.
	At   *time.Time `json:"at,omitempty"`
	Body []byte     `json:"body,omitempty"`
	// Lane names the bucket of a corrupt record.
	Lane string `json:"lane,omitempty"`
}

func tp(ns int64) *time.Time {
	t := time.Unix(0, ns).UTC()
	return &t
}

func fp(f float64) *float64 { return &f }

// Export writes every record of a queue file that no running agent holds
// as JSON lines to w: the priority lane, then the readings, then the
// dead-letter bucket, each in sequence order. It returns the number of
// lines written.
func Export(path string, w io.Writer) (int, error) {
	db, err := openChecked(path, CheckQuick, true)
	if err != nil {
		return 0, fmt.Errorf("export buffer %q: %w", path, err)
	}
	defer db.Close()
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		for _, lane := range []struct {
			name  []byte
			label string
		}{{bucketPri, "pri"}, {bucketTel, "tel"}, {bucketDead, "dead"}} {
			b := tx.Bucket(lane.name)
			if b == nil {
				continue
			}
			err := b.ForEach(func(k, v []byte) error {
				rec := exportRecord(keySeq(k), v)
				if rec.Kind == "corrupt" {
					rec.Lane = lane.label
				}
				if err := enc.Encode(&rec); err != nil {
					rec = ExportRecord{Kind: "corrupt", Seq: rec.Seq, Lane: lane.label}
					if err := enc.Encode(&rec); err != nil {
						return err
					}
				}
				n++
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return n, fmt.Errorf("export buffer %q: %w", path, err)
	}
	return n, nil
}

func exportRecord(seq uint64, v []byte) ExportRecord {
	bad := ExportRecord{Kind: "corrupt", Seq: seq}
	if len(v) == 0 {
		return bad
	}
	switch v[0] {
	case recReading:
		var r wire.Reading
		if decodeReading(v, &r) != nil {
			return bad
		}
		return ExportRecord{Kind: "reading", Seq: seq, Sensor: r.Sensor, Time: tp(r.Time), Value: fp(r.Value),
			Quality: r.Quality.String(), Flags: uint16(r.Flags), Score: r.Score, Model: r.Model}
	case recEvent:
		var e wire.Event
		if decodeEvent(v, &e) != nil {
			return bad
		}
		return ExportRecord{Kind: "event", Seq: seq, Sensor: e.Sensor, Asset: e.Asset, EventKind: uint8(e.Kind),
			State: uint8(e.State), Severity: e.Severity.String(), Rule: e.Rule, Time: tp(e.Time),
			WindowStart: tp(e.WindowStart), WindowEnd: tp(e.WindowEnd), Value: fp(e.Value), Score: e.Score,
			Threshold: fp(e.Threshold), Model: e.Model}
	case recGap:
		var g wire.Gap
		if decodeGap(v, &g) != nil {
			return bad
		}
		return ExportRecord{Kind: "gap", Seq: seq, Sensor: g.Sensor, From: tp(g.From), To: tp(g.To), Count: g.Count, Reason: g.Reason}
	case recDead:
		var d deadRecord
		if decodeDead(v, &d) != nil {
			return bad
		}
		return ExportRecord{Kind: "dead_letter", Seq: seq, At: tp(d.At), Reason: d.Reason, Body: d.Body}
	}
	return bad
}
