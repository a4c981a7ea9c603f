package mapping

import (
	"testing"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// BenchmarkMapJSON decodes and maps one JSON reading (value, epoch-ms
// timestamp, quality) on a known topic.
func BenchmarkMapJSON(b *testing.B) {
	m := newTestMapper(b, nil, nil, jsonSub)
	topic := "plant/site1/line2/pump7/vib_x"
	payload := []byte(`{"v": 3.2512, "ts": 1764151200123, "q": "good", "unit": "mm/s", "seq": 81231}`)
	dst := make([]wire.Reading, 0, 1)
	m.Map(dst, topic, payload, recv) // warm the route cache
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		dst = m.Map(dst[:0], topic, payload, recv)
	}
	if len(dst) != 1 {
		b.Fatal("no reading")
	}
}

// BenchmarkMapJSONRFC3339 is BenchmarkMapJSON with an RFC 3339 timestamp.
func BenchmarkMapJSONRFC3339(b *testing.B) {
	m := newTestMapper(b, nil, nil, jsonSub)
	topic := "plant/site1/line2/pump7/vib_x"
	payload := []byte(`{"v": 3.2512, "ts": "2026-11-26T10:00:00.123Z", "q": "good"}`)
	dst := make([]wire.Reading, 0, 1)
	m.Map(dst, topic, payload, recv)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Map(dst[:0], topic, payload, recv)
	}
	if len(dst) != 1 {
		b.Fatal("no reading")
	}
}

// BenchmarkMapPlain decodes and maps one plain-number payload.
func BenchmarkMapPlain(b *testing.B) {
	m := newTestMapper(b, nil, nil, plainSub)
	topic := "legacy/tank2/level"
	payload := []byte("12.75")
	dst := make([]wire.Reading, 0, 1)
	m.Map(dst, topic, payload, recv)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Map(dst[:0], topic, payload, recv)
	}
	if len(dst) != 1 {
		b.Fatal("no reading")
	}
}

// BenchmarkMapSparkplug maps a DDATA payload of 10 metrics by alias.
func BenchmarkMapSparkplug(b *testing.B) {
	m := newTestMapper(b, nil, nil, spSub)
	var birth, data []spM
	for i := range 10 {
		birth = append(birth, spM{name: "Metric" + string(rune('A'+i)), alias: uint64(i + 1), dtype: spDouble, fval: 1})
		data = append(data, spM{alias: uint64(i + 1), dtype: spDouble, fval: float64(i)})
	}
	m.Map(nil, "spBv1.0/g/DBIRTH/n/d", encodeSparkplug(t0, 0, birth...), recv)
	payload := encodeSparkplug(t0, 1, data...)
	dst := make([]wire.Reading, 0, 10)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Map(dst[:0], "spBv1.0/g/DDATA/n/d", payload, recv)
	}
	if len(dst) != 10 {
		b.Fatalf("%d readings", len(dst))
	}
}
