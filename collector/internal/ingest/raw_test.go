package ingest

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// jsonbSafe reports whether b is JSON that PostgreSQL's jsonb accepts:
// valid JSON without the \u0000 escape.
func jsonbSafe(b []byte) bool {
	return json.Valid(b) && !strings.Contains(string(b), `\u0000`)
}

func FuzzRawReading(f *testing.F) {
	f.Add("p/l/a/t1", "ewma@1", 1.5, float32(0.5), int64(0))
	f.Add("bad\x00id", "m\x00", math.NaN(), float32(math.Inf(1)), int64(-1))
	f.Add("\xff\xfe", "", math.Inf(-1), float32(-0.0), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, sensor, model string, value float64, score float32, at int64) {
		r := wire.Reading{Sensor: sensor, Model: model, Value: value, Score: score, Time: at, Seq: math.MaxUint64}
		if b := rawReading(&r); !jsonbSafe(b) {
			t.Fatalf("rawReading gives %s", b)
		}
		e := wire.Event{Sensor: sensor, Rule: model, Asset: model, Model: model, Value: value, Threshold: value, Score: score}
		if b := rawEvent(&e); !jsonbSafe(b) {
			t.Fatalf("rawEvent gives %s", b)
		}
		g := wire.Gap{Sensor: sensor, Reason: model, From: at, To: at}
		if b := rawGap(&g); !jsonbSafe(b) {
			t.Fatalf("rawGap gives %s", b)
		}
		if p := printable(sensor); printable(p) != p || !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
			t.Fatalf("printable(%q) = %q", sensor, p)
		}
	})
}

func TestRawReadingKeepsValues(t *testing.T) {
	r := wire.Reading{Sensor: "a/b", Time: 42, Value: math.NaN(), Quality: 9, Seq: math.MaxUint64, Score: 2, Model: "m\x00"}
	var got map[string]any
	if err := json.Unmarshal(rawReading(&r), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"sensor": "a/b", "time_ns": 42.0, "value": "NaN", "quality": 9.0, "flags": 0.0,
		"seq": "18446744073709551615", "score": 2.0, "model": "m\uFFFD"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
