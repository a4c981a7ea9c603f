package mapping

import (
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// spM is a Sparkplug metric for the test encoder.
type spM struct {
	name   string
	alias  uint64
	ts     uint64
	dtype  uint64
	ival   uint64
	fval   float64
	isNull bool
	str    string
}

// encodeSparkplug builds a Sparkplug B Payload with protowire, field by
// field as in sparkplug_b.proto.
func encodeSparkplug(ts uint64, seq uint64, ms ...spM) []byte {
	var b []byte
	if ts != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, ts)
	}
	for _, m := range ms {
		var mb []byte
		if m.name != "" {
			mb = protowire.AppendTag(mb, 1, protowire.BytesType)
			mb = protowire.AppendString(mb, m.name)
		}
		if m.alias != 0 {
			mb = protowire.AppendTag(mb, 2, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.alias)
		}
		if m.ts != 0 {
			mb = protowire.AppendTag(mb, 3, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.ts)
		}
		mb = protowire.AppendTag(mb, 4, protowire.VarintType)
		mb = protowire.AppendVarint(mb, m.dtype)
		if m.isNull {
			mb = protowire.AppendTag(mb, 7, protowire.VarintType)
			mb = protowire.AppendVarint(mb, 1)
		}
		switch m.dtype {
		case spInt8, spInt16, spInt32, spUInt8, spUInt16, spUInt32:
			mb = protowire.AppendTag(mb, 10, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.ival)
		case spInt64, spUInt64:
			mb = protowire.AppendTag(mb, 11, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.ival)
		case spFloat:
			mb = protowire.AppendTag(mb, 12, protowire.Fixed32Type)
			mb = protowire.AppendFixed32(mb, math.Float32bits(float32(m.fval)))
		case spDouble:
			mb = protowire.AppendTag(mb, 13, protowire.Fixed64Type)
			mb = protowire.AppendFixed64(mb, math.Float64bits(m.fval))
		case spBoolean:
			mb = protowire.AppendTag(mb, 14, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.ival)
		case 12: // String
			mb = protowire.AppendTag(mb, 15, protowire.BytesType)
			mb = protowire.AppendString(mb, m.str)
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, mb)
	}
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	return b
}

var spSub = Subscription{
	Topic:  "spBv1.0/{group}/+/{node}/{device#}",
	Format: FormatSparkplug,
	ProfileRules: []ProfileRule{
		{ID: "*/*/*/Pressure**", Profile: "pressure_transmitter"},
		{Segment: ItemVar, Match: "Flow*", Profile: "flow_meter"},
	},
	Profile: "generic_4_20ma",
}

const t0 = 1764151200000 // ms

func TestMapSparkplug(t *testing.T) {
	m := newTestMapper(t, nil, nil, spSub)
	m.stats = newStats(nil, 1000, nil)
	cases := []mapCase{
		{name: "DBIRTH declares aliases and carries values", topic: "spBv1.0/water/DBIRTH/gw1/pump7",
			payload: string(encodeSparkplug(t0, 0,
				spM{name: "Pressure/Discharge", alias: 1, dtype: spFloat, fval: 6.5},
				spM{name: "FlowRate", alias: 2, dtype: spDouble, fval: 120.25, ts: t0 + 5},
				spM{name: "Mode", alias: 3, dtype: 12, str: "auto"},
				spM{name: "Temp", alias: 4, dtype: spInt16, ival: uint64(uint16(0xFFF6))}, // -10
			)),
			want: []wire.Reading{
				{Sensor: "water/gw1/pump7/Pressure/Discharge", Time: t0 * 1e6, Value: 6.5},
				{Sensor: "water/gw1/pump7/FlowRate", Time: (t0 + 5) * 1e6, Value: 120.25},
				{Sensor: "water/gw1/pump7/Temp", Time: t0 * 1e6, Value: -10},
			}},
		{name: "DDATA by alias", topic: "spBv1.0/water/DDATA/gw1/pump7",
			payload: string(encodeSparkplug(t0+1000, 1,
				spM{alias: 1, dtype: spFloat, fval: 7},
				spM{alias: 2, dtype: spDouble, fval: math.NaN()},
				spM{alias: 9, dtype: spDouble, fval: 1},
				spM{alias: 4, dtype: spInt32, ival: uint64(0xFFFFFFFF)}, // -1
				spM{alias: 1, dtype: spFloat, isNull: true},
			)),
			want: []wire.Reading{
				{Sensor: "water/gw1/pump7/Pressure/Discharge", Time: (t0 + 1000) * 1e6, Value: 7},
				{Sensor: "water/gw1/pump7/Temp", Time: (t0 + 1000) * 1e6, Value: -1},
			},
			reasons: []string{ReasonNonFinite, ReasonUnknownAlias}},
		{name: "NDATA node metric, no timestamps", topic: "spBv1.0/water/NDATA/gw1",
			payload: string(encodeSparkplug(0, 2, spM{name: "Uptime", dtype: spUInt64, ival: 1 << 40}, spM{name: "Online", dtype: spBoolean, ival: 1})),
			want: []wire.Reading{
				{Sensor: "water/gw1/Uptime", Time: recv.UnixNano(), Value: float64(1 << 40), Flags: wire.FlagNoTimestamp},
				{Sensor: "water/gw1/Online", Time: recv.UnixNano(), Value: 1, Flags: wire.FlagNoTimestamp},
			}},
		{name: "DEATH ignored", topic: "spBv1.0/water/DDEATH/gw1/pump7", payload: string(encodeSparkplug(t0, 3))},
		{name: "garbage", topic: "spBv1.0/water/DDATA/gw1/pump7", payload: "\xff\xff\xff", reasons: []string{ReasonBadPayload}},
	}
	runMapCases(t, m, cases)
	if p, ok := m.Profile("water/gw1/pump7/FlowRate"); !ok || p.Name != "flow_meter" {
		t.Errorf("FlowRate profile = %v", p)
	}
	if p, ok := m.Profile("water/gw1/pump7/Pressure/Discharge"); !ok || p.Name != "pressure_transmitter" {
		t.Errorf("Pressure profile = %v", p)
	}
}

func FuzzMapSparkplug(f *testing.F) {
	f.Add([]byte(encodeSparkplug(t0, 0, spM{name: "a", alias: 1, dtype: spDouble, fval: 1})))
	f.Add([]byte(encodeSparkplug(t0, 1, spM{alias: 1, dtype: spInt8, ival: 255})))
	f.Add([]byte(encodeSparkplug(0, 1, spM{name: "s", dtype: 12, str: "x"}, spM{name: "n", dtype: spFloat, isNull: true})))
	m := newTestMapper(f, nil, nil, spSub)
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkReadings(t, m.Map(nil, "spBv1.0/g/DBIRTH/n/d", payload, recv))
		checkReadings(t, m.Map(nil, "spBv1.0/g/DDATA/n/d", payload, recv))
		checkReadings(t, m.Map(nil, "spBv1.0/g/NDATA/n", payload, recv))
	})
}
