package buffer

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smartmaint/smartmaint/shared/wire"
)

var readingCases = []wire.Reading{
	{},
	{Sensor: "site1/line2/pump7/vib_x", Time: 1_764_000_000_123_456_789, Value: 3.25, Quality: wire.QualityUncertain,
		Flags: wire.FlagAnomaly | wire.FlagReplayed, Score: 0.97, Model: "iforest@3"},
	{Sensor: "ü/ñ", Time: -5, Value: -math.MaxFloat64, Quality: wire.QualityBad, Flags: 0xffff},
}

var eventCases = []wire.Event{
	{},
	{Sensor: "s", Asset: "pump7", Kind: wire.EventLimit, State: wire.EventRaised, Severity: wire.SeverityCritical,
		Rule: "HH", Time: 10, WindowStart: 1, WindowEnd: 9, Value: 99.5, Score: 0.5, Threshold: 90, Model: "m@1"},
}

var gapCases = []wire.Gap{
	{},
	{Sensor: "s1", From: 1, To: 2, Count: 12345, Reason: wire.GapBudget},
}

func TestRecordRoundTrip(t *testing.T) {
	for _, want := range readingCases {
		var got wire.Reading
		if err := decodeReading(appendReading(nil, &want), &got); err != nil {
			t.Fatalf("decode reading %+v: %v", want, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("reading round trip (-want +got):\n%s", diff)
		}
	}
	for _, want := range eventCases {
		var got wire.Event
		if err := decodeEvent(appendEvent(nil, &want), &got); err != nil {
			t.Fatalf("decode event %+v: %v", want, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("event round trip (-want +got):\n%s", diff)
		}
	}
	for _, want := range gapCases {
		var got wire.Gap
		if err := decodeGap(appendGap(nil, &want), &got); err != nil {
			t.Fatalf("decode gap %+v: %v", want, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("gap round trip (-want +got):\n%s", diff)
		}
	}
	want := deadRecord{At: 7, Reason: "400 bad", Body: []byte{1, 2, 3}}
	var got deadRecord
	if err := decodeDead(appendDead(nil, &want), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead round trip (-want +got):\n%s", diff)
	}
}

func TestRecordDetectsCorruption(t *testing.T) {
	v := appendReading(nil, &readingCases[1])
	for i := range v {
		bad := append([]byte(nil), v...)
		bad[i] ^= 0x40
		var r wire.Reading
		if err := decodeReading(bad, &r); err == nil {
			t.Errorf("flipping a bit of byte %d went unnoticed", i)
		}
	}
	for n := range len(v) {
		var r wire.Reading
		if err := decodeReading(v[:n], &r); err == nil {
			t.Errorf("truncation to %d bytes went unnoticed", n)
		}
	}
}

// FuzzDecodeRecord: decoders never panic, and what decodes re-encodes to
// the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for i := range readingCases {
		f.Add(appendReading(nil, &readingCases[i]))
	}
	for i := range eventCases {
		f.Add(appendEvent(nil, &eventCases[i]))
	}
	for i := range gapCases {
		f.Add(appendGap(nil, &gapCases[i]))
	}
	f.Add(appendDead(nil, &deadRecord{Reason: "x", Body: []byte("y")}))
	f.Fuzz(func(t *testing.T, v []byte) {
		var r wire.Reading
		if decodeReading(v, &r) == nil {
			var again wire.Reading
			if err := decodeReading(appendReading(nil, &r), &again); err != nil {
				t.Fatalf("re-encoded reading does not decode: %v", err)
			}
			if diff := cmp.Diff(r, again, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("reading changes on re-encoding:\n%s", diff)
			}
		}
		_, _, _ = readingSensorTime(v)
		var e wire.Event
		_ = decodeEvent(v, &e)
		var g wire.Gap
		if decodeGap(v, &g) == nil {
			var again wire.Gap
			if err := decodeGap(appendGap(nil, &g), &again); err != nil || again != g {
				t.Errorf("gap changes on re-encoding: %+v → %+v (%v)", g, again, err)
			}
		}
		var d deadRecord
		_ = decodeDead(v, &d)
		_ = exportRecord(1, v)
	})
}
