package wire

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
)

// roundTripCases are the table cases of the round-trip test; the fuzz test
// is seeded from them.
func roundTripCases() []struct {
	name string
	b    *Batch
} {
	nan := math.Float64frombits(0x7ff8_dead_beef_0001) // a NaN with a payload
	many := &Batch{EdgeID: "e", BatchID: "max"}
	for i := range MaxItems {
		many.Readings = append(many.Readings, Reading{Sensor: "s", Time: int64(i) * 1e9, Value: float64(i), Seq: uint64(i)})
	}
	return []struct {
		name string
		b    *Batch
	}{
		{"empty", &Batch{}},
		{"header only", &Batch{EdgeID: "edge-1", BatchID: "b-1", FirstSeq: 7, LastSeq: 7, SentAt: 1_700_000_000_000_000_000}},
		{"realistic 1000", realisticBatch(1, 1000)},
		{"realistic 10", realisticBatch(2, 10)},
		{"non-finite values bit-exact", &Batch{EdgeID: "e", BatchID: "nan", Readings: []Reading{
			{Sensor: "a", Time: 1, Value: math.NaN(), Seq: 1},
			{Sensor: "a", Time: 2, Value: nan, Seq: 2},
			{Sensor: "a", Time: 3, Value: math.Inf(1), Seq: 3},
			{Sensor: "a", Time: 4, Value: math.Inf(-1), Seq: 4},
			{Sensor: "a", Time: 5, Value: math.Copysign(0, -1), Seq: 5, Score: float32(math.Copysign(0, -1))},
			{Sensor: "a", Time: 6, Value: math.SmallestNonzeroFloat64, Seq: 6, Score: float32(math.NaN())},
			{Sensor: "a", Time: 7, Value: math.MaxFloat64, Seq: 7, Score: float32(math.Inf(1))},
		}, Events: []Event{{Sensor: "a", Value: nan, Score: float32(math.Inf(-1)), Threshold: math.Copysign(0, -1)}}}},
		{"extreme integers", &Batch{EdgeID: "e", BatchID: "ext", FirstSeq: math.MaxUint64, LastSeq: 0, SentAt: math.MinInt64,
			Readings: []Reading{
				{Sensor: "x", Time: math.MaxInt64, Seq: math.MaxUint64, Quality: math.MaxUint8, Flags: math.MaxUint16},
				{Sensor: "x", Time: math.MinInt64, Seq: 0, Quality: QualityBad},
				{Sensor: "y", Time: -1, Seq: 1 << 63},
				{Sensor: "x", Time: math.MaxInt64, Seq: 3},
			},
			Events: []Event{{Kind: math.MaxUint8, State: math.MaxUint8, Severity: math.MaxUint8, Time: math.MinInt64,
				WindowStart: math.MaxInt64, WindowEnd: -1, Seq: math.MaxUint64}},
			Gaps: []Gap{{From: math.MinInt64, To: math.MaxInt64, Count: math.MaxUint64, Seq: math.MaxUint64}},
		}},
		{"all-zero readings omit columns", &Batch{Readings: []Reading{{}, {}, {}}}},
		{"unicode ids", &Batch{EdgeID: "Werk-Süd/östlich", BatchID: "批次-7", Readings: []Reading{
			{Sensor: "usine1/ligne2/pompe7/température", Time: 1, Value: 20.5, Seq: 1, Model: "détecteur@1"},
			{Sensor: "工場1/ライン2/ポンプ7/振動", Time: 2, Value: 0.25, Seq: 2},
			{Sensor: "🏭/⚙️/🌡", Time: 3, Value: -3, Seq: 3},
			{Sensor: "", Time: 4, Value: 1, Seq: 4},
		}, Gaps: []Gap{{Sensor: "工場1/ライン2/ポンプ7/振動", Reason: "ïnvalid ✓"}}}},
		{"invalid UTF-8 passes through", &Batch{EdgeID: "\xff\xfe", Readings: []Reading{{Sensor: "a\x00b\xc3", Seq: 1}}}},
		{"long sensor id", &Batch{Readings: []Reading{{Sensor: strings.Repeat("x", 70_000), Value: 1}, {Sensor: strings.Repeat("x", 70_000), Value: 2}}}},
		{"events and gaps only", &Batch{EdgeID: "e", Events: realisticBatch(3, 0).Events, Gaps: realisticBatch(3, 0).Gaps}},
		{"max items", many},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range roundTripCases() {
		for _, comp := range []byte{compressionZstd, compressionNone} {
			t.Run(tc.name+"/"+compressionName(comp), func(t *testing.T) {
				t.Parallel()
				body, err := encodeBatch([]byte("prefix"), tc.b, comp)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				if !bytes.HasPrefix(body, []byte("prefix")) {
					t.Fatalf("EncodeBatch did not append to dst")
				}
				body = body[len("prefix"):]
				// Decode into a batch holding other data: nothing may leak through.
				got := realisticBatch(9, 50)
				if err := DecodeBatch(body, got, DefaultMaxDecoded); err != nil {
					t.Fatalf("decode: %v", err)
				}
				if d := batchDiff(tc.b, got); d != "" {
					t.Errorf("round trip mismatch (-want +got):\n%s", d)
				}
			})
		}
	}
}

func compressionName(c byte) string {
	if c == compressionZstd {
		return "zstd"
	}
	return "none"
}

func TestEncodeTooManyItems(t *testing.T) {
	t.Parallel()
	b := &Batch{BatchID: "big", Readings: make([]Reading, MaxItems), Gaps: make([]Gap, 1)}
	dst := []byte("keep")
	out, err := EncodeBatch(dst, b)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("EncodeBatch error = %v, want ErrTooLarge", err)
	}
	if string(out) != "keep" {
		t.Errorf("EncodeBatch changed dst on error: %q", out)
	}
}

func TestDecodeReusesSlicesAndInternsSensors(t *testing.T) {
	t.Parallel()
	want := realisticBatch(4, 1000)
	body, err := EncodeBatch(nil, want)
	if err != nil {
		t.Fatal(err)
	}
	var got Batch
	if err := DecodeBatch(body, &got, 0); err != nil {
		t.Fatal(err)
	}
	first := &got.Readings[0]
	if err := DecodeBatch(body, &got, 0); err != nil {
		t.Fatal(err)
	}
	if first != &got.Readings[0] {
		t.Errorf("second decode allocated a new readings slice")
	}
	if d := batchDiff(want, &got); d != "" {
		t.Errorf("mismatch (-want +got):\n%s", d)
	}
	// Readings of one sensor share one string.
	bySensor := map[string]*byte{}
	for _, r := range got.Readings {
		p := unsafe.StringData(r.Sensor)
		if q, ok := bySensor[r.Sensor]; ok && q != p {
			t.Fatalf("sensor %q not interned: two copies", r.Sensor)
		}
		bySensor[r.Sensor] = p
	}
}

// body builds a body by hand: header with the given version, compression
// and declared length, then data.
func body(version, comp byte, declared uint64, data []byte) []byte {
	b := []byte{magic0, magic1, magic2, magic3, version, comp}
	b = protowire.AppendVarint(b, declared)
	return append(b, data...)
}

// raw wraps an uncompressed payload in a correct header.
func raw(payload []byte) []byte {
	return body(FormatVersion, compressionNone, uint64(len(payload)), payload)
}

// msg builds payload bytes from fields.
type pb []byte

func (p pb) str(n protowire.Number, s string) pb {
	return protowire.AppendString(protowire.AppendTag(p, n, protowire.BytesType), s)
}
func (p pb) bytes(n protowire.Number, b []byte) pb {
	return protowire.AppendBytes(protowire.AppendTag(p, n, protowire.BytesType), b)
}
func (p pb) varint(n protowire.Number, v uint64) pb {
	return protowire.AppendVarint(protowire.AppendTag(p, n, protowire.VarintType), v)
}
func (p pb) fixed32(n protowire.Number, v uint32) pb {
	return protowire.AppendFixed32(protowire.AppendTag(p, n, protowire.Fixed32Type), v)
}

func varints(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = protowire.AppendVarint(b, v)
	}
	return b
}

func decodeErrorCases() []struct {
	name    string
	body    []byte
	max     int
	want    error
	errText string
} {
	good, err := EncodeBatch(nil, realisticBatch(5, 100))
	if err != nil {
		panic(err)
	}
	badZstd := bytes.Clone(good)
	for i := len(badZstd) / 2; i < len(badZstd)/2+16; i++ {
		badZstd[i] ^= 0x5a
	}
	sensors := pb(nil).str(fBatchSensors, "a")
	return []struct {
		name    string
		body    []byte
		max     int
		want    error
		errText string
	}{
		{"empty body", nil, 0, ErrCorrupt, "shorter than the 6-byte header"},
		{"json body", []byte(`{"edge_id":"x"}`), 0, ErrCorrupt, "not the magic"},
		{"future version", body(2, compressionZstd, 0, nil), 0, ErrUnsupportedVersion, "format version 2 at byte 4"},
		{"unknown compression", body(FormatVersion, 7, 0, nil), 0, ErrUnsupportedVersion, "compression id 7 at byte 5"},
		{"bad length varint", body(FormatVersion, compressionNone, 0, nil)[:6], 0, ErrCorrupt, "payload length at byte 6"},
		{"declared over limit", body(FormatVersion, compressionZstd, 1<<30, []byte{1, 2, 3}), 1 << 20, ErrTooLarge, "exceeds the limit of 1048576 bytes"},
		{"raw length mismatch", body(FormatVersion, compressionNone, 10, []byte{1}), 0, ErrCorrupt, "header declares 10"},
		{"corrupt zstd", badZstd, 0, ErrCorrupt, "zstd data from byte"},
		{"not zstd", body(FormatVersion, compressionZstd, 4, []byte("abcd")), 0, ErrCorrupt, "zstd data from byte 7"},
		{"zstd shorter than declared", func() []byte {
			enc, _ := zstd.NewWriter(nil)
			return body(FormatVersion, compressionZstd, 100, enc.EncodeAll([]byte("abc"), nil))
		}(), 0, ErrCorrupt, "decompresses to 3 bytes, header declares 100"},
		{"truncated tag", raw([]byte{0x80}), 0, ErrCorrupt, "payload byte 0: field tag"},
		{"field number zero", raw([]byte{0x00}), 0, ErrCorrupt, "payload byte 0: field tag"},
		{"truncated string", raw([]byte{0x0a, 0x05, 'a'}), 0, ErrCorrupt, "payload byte 1: value of field 1"},
		{"wrong wire type", raw(pb(nil).varint(fBatchEdgeID, 3)), 0, ErrCorrupt, "field 1 (edge_id) has wire type 0, want 2"},
		{"group wire type", raw([]byte{0x0b}), 0, ErrCorrupt, "value of field 1"},
		{"sensor index out of range", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0, 1)))), 0, ErrCorrupt,
			"reading 1: sensor index 1 out of range (dictionary has 1 entries)"},
		{"model index out of range", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0)).bytes(colModel, varints(1)))), 0, ErrCorrupt,
			"reading 0: model index 1 out of range"},
		{"time column short", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0, 0)).bytes(colTime, varints(5)))), 0, ErrCorrupt,
			"reading 1: time column has only 1 values, want 2"},
		{"seq column long", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0)).bytes(colSeq, varints(5, 6)))), 0, ErrCorrupt,
			"seq column has more than 1 values"},
		{"value column length", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0)).bytes(colValue, make([]byte, 7)))), 0, ErrCorrupt,
			"value column is 7 bytes, want 8 for 1 readings"},
		{"score column length", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0, 0)).bytes(colScore, make([]byte, 4)))), 0, ErrCorrupt,
			"score column is 4 bytes, want 8 for 2 readings"},
		{"quality above uint8", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0)).bytes(colQuality, varints(256)))), 0, ErrCorrupt,
			"reading 0: quality 256 above 255"},
		{"flags above uint16", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0)).bytes(colFlags, varints(1<<16)))), 0, ErrCorrupt,
			"reading 0: flags 65536 above 65535"},
		{"bad varint in column", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, []byte{0x80}))), 0, ErrCorrupt,
			"sensor column, value 0: unexpected EOF"},
		{"duplicate column", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0)).bytes(colSensor, varints(0)))), 0, ErrCorrupt,
			"payload byte 8: readings: second sensor column (the first is at byte 5)"},
		{"duplicate readings", raw(sensors.bytes(fBatchReadings, nil).bytes(fBatchReadings, nil)), 0, ErrCorrupt,
			"payload byte 5: second readings field (the first is at byte 3)"},
		{"column with wrong wire type", raw(sensors.bytes(fBatchReadings, pb(nil).varint(colTime, 1))), 0, ErrCorrupt,
			"readings field 2 (time) has wire type 0, want 2"},
		{"event severity above uint8", raw(pb(nil).bytes(fBatchEvents, pb(nil).varint(fEvSeverity, 300))), 0, ErrCorrupt,
			"event 0: payload byte 3: event severity is 300, above 255"},
		{"event score wrong type", raw(pb(nil).bytes(fBatchEvents, nil).bytes(fBatchEvents, pb(nil).varint(fEvScore, 1))), 0, ErrCorrupt,
			"event 1: payload byte 4: event field 11 (score) has wire type 0, want 5"},
		{"gap reason wrong type", raw(pb(nil).bytes(fBatchGaps, pb(nil).fixed32(fGapReason, 1))), 0, ErrCorrupt,
			"gap 0: payload byte 2: gap field 5 (reason) has wire type 5, want 2"},
		{"too many readings", raw(sensors.bytes(fBatchReadings, pb(nil).bytes(colSensor, make([]byte, MaxItems+1)))), 0, ErrTooLarge,
			"100001 readings"},
		{"too many items", raw(pb(nil).bytes(fBatchGaps, nil).bytes(fBatchReadings, pb(nil).bytes(colSensor, make([]byte, MaxItems)))), 0, ErrTooLarge,
			"100000 readings, with events and gaps more than 100000 items"},
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range decodeErrorCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := realisticBatch(6, 20)
			err := DecodeBatch(tc.body, b, tc.max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeBatch error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("error %q does not say %q", err, tc.errText)
			}
			if len(b.Readings)+len(b.Events)+len(b.Gaps) != 0 || b.BatchID != "" {
				t.Errorf("batch not empty after failed decode: %d readings, %d events, %d gaps, id %q",
					len(b.Readings), len(b.Events), len(b.Gaps), b.BatchID)
			}
		})
	}
}

func TestUnknownFieldsSkipped(t *testing.T) {
	t.Parallel()
	// A newer encoder of version 1 may add fields; an older decoder keeps
	// what it knows.
	p := pb(nil).str(fBatchEdgeID, "e").varint(99, 5).str(fBatchSensors, "s").
		bytes(fBatchReadings, pb(nil).bytes(colSensor, varints(0)).fixed32(42, 7).bytes(colTime, varints(protowire.EncodeZigZag(-4)))).
		bytes(fBatchEvents, pb(nil).str(fEvRule, "H").fixed32(200, 1)).
		bytes(fBatchGaps, pb(nil).varint(fGapCount, 3).str(77, "x"))
	var got Batch
	if err := DecodeBatch(raw(p), &got, 0); err != nil {
		t.Fatal(err)
	}
	want := &Batch{EdgeID: "e", Readings: []Reading{{Sensor: "s", Time: -4}}, Events: []Event{{Rule: "H"}}, Gaps: []Gap{{Count: 3}}}
	if d := batchDiff(want, &got); d != "" {
		t.Errorf("mismatch (-want +got):\n%s", d)
	}
}

func TestTruncatedBodiesFail(t *testing.T) {
	t.Parallel()
	for _, comp := range []byte{compressionZstd, compressionNone} {
		full, err := encodeBatch(nil, realisticBatch(7, 200), comp)
		if err != nil {
			t.Fatal(err)
		}
		var b Batch
		for n := range len(full) {
			if err := DecodeBatch(full[:n], &b, 0); err == nil {
				t.Fatalf("%s: body truncated to %d of %d bytes decoded without error", compressionName(comp), n, len(full))
			}
		}
	}
}

func TestZipBomb(t *testing.T) {
	t.Parallel()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	const bomb = 256 << 20
	frame := enc.EncodeAll(make([]byte, bomb), nil) // 256 MiB of zeros
	if len(frame) > 64<<10 {
		t.Fatalf("bomb frame is %d bytes, expected a few KiB", len(frame))
	}
	tests := []struct {
		name     string
		declared uint64
		max      int
		want     error
	}{
		{"honest header over the limit", bomb, 1 << 20, ErrTooLarge},
		{"lying header under the limit", 1000, 1 << 20, ErrCorrupt},
		{"lying header at the limit", 1 << 20, 1 << 20, ErrCorrupt},
		{"default limit", bomb, 0, ErrTooLarge},
	}
	for _, tc := range tests {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := DecodeBatch(body(FormatVersion, compressionZstd, tc.declared, frame), &Batch{}, tc.max)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: error = %v, want %v", tc.name, err, tc.want)
		}
		// Other parallel tests allocate too, so allow generous slack; the
		// bomb itself would be 256 MiB.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
			t.Errorf("%s: decoding allocated %d MiB", tc.name, grew>>20)
		}
	}
}

func TestDecodeNeverPanicsOnBitFlips(t *testing.T) {
	t.Parallel()
	// Deterministic complement to the fuzz test: flip each bit of a small
	// uncompressed body; every result either decodes and round-trips or
	// fails with one of the sentinels.
	full, err := encodeBatch(nil, realisticBatch(8, 12), compressionNone)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(full) * 8 {
		mut := bytes.Clone(full)
		mut[i/8] ^= 1 << (i % 8)
		checkDecode(t, mut)
	}
}

// checkDecode is the fuzz property: decoding never panics, errors wrap a
// sentinel, and whatever decodes re-encodes and decodes to the same value.
func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	var b Batch
	err := DecodeBatch(data, &b, 1<<20)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		return
	}
	again, err := EncodeBatch(nil, &b)
	if err != nil {
		t.Fatalf("decoded batch does not re-encode: %v", err)
	}
	var b2 Batch
	if err := DecodeBatch(again, &b2, math.MaxInt); err != nil {
		t.Fatalf("re-encoded batch does not decode: %v", err)
	}
	if d := batchDiff(&b, &b2); d != "" {
		t.Fatalf("re-encode round trip mismatch (-first +second):\n%s", d)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	for _, tc := range roundTripCases() {
		if len(tc.b.Readings) > 2000 {
			continue // keep the seed corpus small
		}
		for _, comp := range []byte{compressionNone, compressionZstd} {
			body, err := encodeBatch(nil, tc.b, comp)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(body)
		}
	}
	for _, tc := range decodeErrorCases() {
		if len(tc.body) < 4096 {
			f.Add(tc.body)
		}
	}
	f.Fuzz(checkDecode)
}
