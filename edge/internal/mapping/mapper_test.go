package mapping

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	firmwareconfigs "github.com/smartmaint/smartmaint/firmware-configs"
	"github.com/smartmaint/smartmaint/shared/wire"
)

var recv = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func builtinProfiles(t testing.TB) Profiles {
	t.Helper()
	ps := Profiles{}
	if probs := LoadProfiles(ps, firmwareconfigs.Profiles, firmwareconfigs.ProfilesDir, "builtin"); len(probs) > 0 {
		t.Fatalf("built-in profiles: %v", probs)
	}
	return ps
}

func newTestMapper(t testing.TB, reg prometheus.Registerer, sensors map[string]SensorOverride, subs ...Subscription) *Mapper {
	t.Helper()
	m, err := New(Options{Subscriptions: subs, Sensors: sensors, Profiles: builtinProfiles(t), Registerer: reg, DeadLetters: 8})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ms(t string) int64 {
	tm, err := time.Parse(time.RFC3339Nano, t)
	if err != nil {
		panic(err)
	}
	return tm.UnixNano()
}

type mapCase struct {
	name    string
	topic   string
	payload string
	want    []wire.Reading
	reasons []string // reasons of rejected items, in order
}

var jsonSub = Subscription{
	Topic:  "plant/{site}/{line}/{asset}/{sensor}",
	Format: FormatJSON,
	JSON:   JSONFormat{Value: "v", Timestamp: "ts", Quality: "q"},
	ProfileRules: []ProfileRule{
		{Match: "vib_*", Profile: "triaxial_vibration"},
		{ID: "*/*/*/temp*", Profile: "bearing_temperature"},
	},
	Profile: "generic_4_20ma",
}

var jsonCases = []mapCase{
	{name: "epoch ms", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": 3.25, "ts": 1764151200123, "q": "good"}`,
		want: []wire.Reading{{Sensor: "s1/l1/p7/vib_x", Time: ms("2025-11-26T10:00:00.123Z"), Value: 3.25}}},
	{name: "epoch s float", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": -1e-3, "ts": 1764151200.5}`,
		want: []wire.Reading{{Sensor: "s1/l1/p7/vib_x", Time: ms("2025-11-26T10:00:00.5Z"), Value: -0.001}}},
	{name: "epoch us", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": 1, "ts": 1764151200123456}`,
		want: []wire.Reading{{Sensor: "s1/l1/p7/vib_x", Time: ms("2025-11-26T10:00:00.123456Z"), Value: 1}}},
	{name: "epoch ns string", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": "2.5", "ts": "1764151200123456789"}`,
		want: []wire.Reading{{Sensor: "s1/l1/p7/vib_x", Time: ms("2025-11-26T10:00:00.123456789Z"), Value: 2.5}}},
	{name: "rfc3339 with offset", topic: "plant/s1/l1/p7/temp_de", payload: `{"v": 61.5, "ts": "2026-11-26T11:00:00.25+01:00", "q": 1}`,
		want: []wire.Reading{{Sensor: "s1/l1/p7/temp_de", Time: ms("2026-11-26T10:00:00.25Z"), Value: 61.5, Quality: wire.QualityUncertain}}},
	{name: "no timestamp", topic: "plant/s1/l1/p7/vib_y", payload: ` {"v": 7, "q": "BAD"} `,
		want: []wire.Reading{{Sensor: "s1/l1/p7/vib_y", Time: recv.UnixNano(), Value: 7, Quality: wire.QualityBad, Flags: wire.FlagNoTimestamp}}},
	{name: "null timestamp", topic: "plant/s1/l1/p7/vib_y", payload: `{"v": 7, "ts": null}`,
		want: []wire.Reading{{Sensor: "s1/l1/p7/vib_y", Time: recv.UnixNano(), Value: 7, Flags: wire.FlagNoTimestamp}}},
	{name: "bool value", topic: "plant/s1/l1/p7/run", payload: `{"v": true}`,
		want: []wire.Reading{{Sensor: "s1/l1/p7/run", Time: recv.UnixNano(), Value: 1, Flags: wire.FlagNoTimestamp}}},
	{name: "array of readings", topic: "plant/s1/l1/p7/vib_z", payload: `[{"v":1,"ts":1764151200000},{"v":"NaN","ts":1764151201000},{"v":3,"ts":1764151202000}]`,
		want: []wire.Reading{
			{Sensor: "s1/l1/p7/vib_z", Time: ms("2025-11-26T10:00:00Z"), Value: 1},
			{Sensor: "s1/l1/p7/vib_z", Time: ms("2025-11-26T10:00:02Z"), Value: 3},
		}, reasons: []string{ReasonNonFinite}},
	{name: "bare number", topic: "plant/s1/l1/p7/vib_x", payload: `4.5`,
		want: []wire.Reading{{Sensor: "s1/l1/p7/vib_x", Time: recv.UnixNano(), Value: 4.5, Flags: wire.FlagNoTimestamp}}},
	{name: "out of range", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": 1e999}`, reasons: []string{ReasonNonFinite}},
	{name: "infinity string", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": "-Inf"}`, reasons: []string{ReasonNonFinite}},
	{name: "missing value", topic: "plant/s1/l1/p7/vib_x", payload: `{"x": 1}`, reasons: []string{ReasonNoValue}},
	{name: "null value", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": null}`, reasons: []string{ReasonNoValue}},
	{name: "text value", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": "high"}`, reasons: []string{ReasonBadValue}},
	{name: "bad timestamp", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": 1, "ts": "yesterday"}`, reasons: []string{ReasonBadTimestamp}},
	{name: "negative timestamp", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": 1, "ts": -5}`, reasons: []string{ReasonBadTimestamp}},
	{name: "bad quality", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": 1, "q": "meh"}`, reasons: []string{ReasonBadQuality}},
	{name: "truncated", topic: "plant/s1/l1/p7/vib_x", payload: `{"v": 1`, reasons: []string{ReasonBadPayload}},
	{name: "garbage", topic: "plant/s1/l1/p7/vib_x", payload: "\x00\xff", reasons: []string{ReasonBadPayload}},
	{name: "empty", topic: "plant/s1/l1/p7/vib_x", payload: "", reasons: []string{ReasonEmpty}},
	{name: "unknown topic", topic: "other/s1", payload: `{"v":1}`, reasons: []string{ReasonUnknownTopic}},
}

func runMapCases(t *testing.T, m *Mapper, cases []mapCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := m.stats.deadLetters(0)
			got := m.Map(nil, tc.topic, []byte(tc.payload), recv)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("readings (-want +got):\n%s", diff)
			}
			after := m.stats.deadLetters(0)
			var reasons []string
			for i := len(after) - len(before) - 1; i >= 0; i-- {
				reasons = append(reasons, after[i].Reason)
				if string(after[i].Payload) != tc.payload && len(tc.payload) < maxDeadLetterBytes {
					t.Errorf("dead letter payload = %q, want the raw payload %q", after[i].Payload, tc.payload)
				}
				if after[i].Topic != tc.topic {
					t.Errorf("dead letter topic = %q, want %q", after[i].Topic, tc.topic)
				}
			}
			if diff := cmp.Diff(tc.reasons, reasons); diff != "" {
				t.Errorf("rejection reasons (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMapJSON(t *testing.T) {
	m := newTestMapper(t, nil, nil, jsonSub)
	m.stats = newStats(nil, 1000, nil) // large ring so the case diffing sees every entry
	runMapCases(t, m, jsonCases)
}

var plainSub = Subscription{Topic: "legacy/{asset}/{sensor}", Format: FormatPlain, Profile: "generic_4_20ma"}

var plainCases = []mapCase{
	{name: "number", topic: "legacy/tank2/level", payload: "12.75",
		want: []wire.Reading{{Sensor: "tank2/level", Time: recv.UnixNano(), Value: 12.75, Flags: wire.FlagNoTimestamp}}},
	{name: "whitespace", topic: "legacy/tank2/level", payload: " -4e2\r\n",
		want: []wire.Reading{{Sensor: "tank2/level", Time: recv.UnixNano(), Value: -400, Flags: wire.FlagNoTimestamp}}},
	{name: "nan", topic: "legacy/tank2/level", payload: "NaN", reasons: []string{ReasonNonFinite}},
	{name: "inf", topic: "legacy/tank2/level", payload: "+Inf", reasons: []string{ReasonNonFinite}},
	{name: "overflow", topic: "legacy/tank2/level", payload: "1e400", reasons: []string{ReasonNonFinite}},
	{name: "text", topic: "legacy/tank2/level", payload: "OK", reasons: []string{ReasonBadPayload}},
	{name: "empty", topic: "legacy/tank2/level", payload: "  ", reasons: []string{ReasonEmpty}},
}

func TestMapPlain(t *testing.T) {
	m := newTestMapper(t, nil, nil, plainSub)
	m.stats = newStats(nil, 1000, nil)
	runMapCases(t, m, plainCases)
}

var itemsSub = Subscription{
	Topic:    "site/{site}/{device}/analog",
	JSON:     JSONFormat{Items: "channels", Sensor: "tag", Value: "mA", Timestamp: "time"},
	SensorID: "{site}/{device}/ai/{item}",
	ProfileRules: []ProfileRule{
		{Segment: ItemVar, Match: "AI*", Profile: "generic_4_20ma"},
	},
}

var itemsCases = []mapCase{
	{name: "items", topic: "site/s1/plc3/analog",
		payload: `{"time":"2026-11-26T10:00:00Z","channels":[{"tag":"AI01","mA":12.1,"time":"2026-11-26T10:00:01Z"},{"tag":"AI02","mA":4},{"tag":"DI1","mA":1},{"mA":5},{"tag":"AI03","mA":"x"}]}`,
		want: []wire.Reading{
			{Sensor: "s1/plc3/ai/AI01", Time: ms("2026-11-26T10:00:01Z"), Value: 12.1},
			{Sensor: "s1/plc3/ai/AI02", Time: ms("2026-11-26T10:00:00Z"), Value: 4},
		},
		reasons: []string{ReasonNoProfile, ReasonNoSensor, ReasonBadValue}},
	{name: "no array", topic: "site/s1/plc3/analog", payload: `{"channels": 5}`, reasons: []string{ReasonBadPayload}},
	{name: "escaped sensor name", topic: "site/s1/plc3/analog",
		payload: `{"time":"2026-11-26T10:00:00Z","channels":[{"tag":"AI\u0030\u0035","mA":7}]}`,
		want:    []wire.Reading{{Sensor: "s1/plc3/ai/AI05", Time: ms("2026-11-26T10:00:00Z"), Value: 7}}},
}

func TestMapJSONItems(t *testing.T) {
	m := newTestMapper(t, nil, nil, itemsSub)
	m.stats = newStats(nil, 1000, nil)
	runMapCases(t, m, itemsCases)
}

func TestProfilesRulesAndOverrides(t *testing.T) {
	hh := 9.0
	sensors := map[string]SensorOverride{
		"s1/l1/p7/vib_x": {Limits: &Limits{HH: &hh}, Unit: "in/s"},
		"s1/l1/p7/other": {Profile: "flow_meter"},
	}
	sub := jsonSub
	sub.Profile = ""
	m := newTestMapper(t, nil, sensors, sub)
	for _, topic := range []string{"plant/s1/l1/p7/vib_x", "plant/s1/l1/p7/vib_y", "plant/s1/l1/p7/temp_nde", "plant/s1/l1/p7/other", "plant/s1/l1/p7/unknown"} {
		m.Map(nil, topic, []byte(`{"v":1}`), recv)
	}
	check := func(id, profile string) *Profile {
		t.Helper()
		p, ok := m.Profile(id)
		if profile == "" {
			if ok {
				t.Errorf("Profile(%q) = %q, want none", id, p.Name)
			}
			return nil
		}
		if !ok || p.Name != profile {
			t.Fatalf("Profile(%q) = %v, %v; want %q", id, p, ok, profile)
		}
		return p
	}
	px := check("s1/l1/p7/vib_x", "triaxial_vibration")
	if px.Unit != "in/s" || *px.Limits.HH != 9 || *px.Limits.H != 4.5 {
		t.Errorf("override not applied: unit %q hh %v h %v", px.Unit, *px.Limits.HH, *px.Limits.H)
	}
	py := check("s1/l1/p7/vib_y", "triaxial_vibration")
	if *py.Limits.HH != 7.1 || py.Unit != "mm/s" {
		t.Errorf("override leaked to another sensor: %+v", py)
	}
	check("s1/l1/p7/temp_nde", "bearing_temperature")
	check("s1/l1/p7/other", "flow_meter")
	check("s1/l1/p7/unknown", "")
	snap := m.Snapshot(0, 0)
	if len(snap.Unmapped) != 1 || snap.Unmapped[0].Topic != "plant/s1/l1/p7/unknown" || snap.Unmapped[0].Reason != ReasonNoProfile {
		t.Errorf("unmapped = %+v", snap.Unmapped)
	}
	var ids []string
	for _, s := range snap.Sensors {
		ids = append(ids, s.ID+"="+s.Profile)
	}
	want := []string{"s1/l1/p7/other=flow_meter", "s1/l1/p7/temp_nde=bearing_temperature", "s1/l1/p7/vib_x=triaxial_vibration", "s1/l1/p7/vib_y=triaxial_vibration"}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("sensors seen (-want +got):\n%s", diff)
	}
}

func TestStatsMetricsAndBoundedRing(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newTestMapper(t, reg, nil, plainSub)
	for i := 0; i < 20; i++ {
		m.Map(nil, "legacy/t/x", []byte("bad"), recv)
		m.Map(nil, "nowhere/"+strings.Repeat("x", i), []byte("1"), recv)
	}
	m.Map(nil, "legacy/t/x", []byte("1"), recv)
	if n := len(m.stats.deadLetters(0)); n != 8 {
		t.Errorf("dead letters kept = %d, want the ring size 8", n)
	}
	if got := testutil.ToFloat64(m.stats.mErrors.WithLabelValues(plainSub.Topic, ReasonBadPayload)); got != 20 {
		t.Errorf("decode errors{bad_payload} = %v, want 20", got)
	}
	if got := testutil.ToFloat64(m.stats.mErrors.WithLabelValues(unmappedSubLabel, ReasonUnknownTopic)); got != 20 {
		t.Errorf("decode errors{unknown_topic} = %v, want 20", got)
	}
	if got, err := testutil.GatherAndCount(reg, "smartmaint_edge_messages_total"); err != nil || got != 3 {
		t.Errorf("messages_total series = %d, %v; want 3", got, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP smartmaint_edge_readings_mapped_total Readings decoded and mapped to a sensor with a profile.
# TYPE smartmaint_edge_readings_mapped_total counter
smartmaint_edge_readings_mapped_total 1
`), "smartmaint_edge_readings_mapped_total"); err != nil {
		t.Error(err)
	}
	snap := m.Snapshot(3, 0)
	if len(snap.DeadLetters) != 3 || snap.DeadLetters[0].Topic != "nowhere/"+strings.Repeat("x", 19) {
		t.Errorf("latest dead letters = %+v", snap.DeadLetters)
	}
	if len(snap.Errors) != 1 || snap.Errors[0].Count != 20 || len(snap.Unmapped) != 20 {
		t.Errorf("errors %+v, unmapped %d", snap.Errors, len(snap.Unmapped))
	}
}

func TestDeadLetterTruncatesPayload(t *testing.T) {
	m := newTestMapper(t, nil, nil, plainSub)
	big := strings.Repeat("z", 10000)
	m.Map(nil, "legacy/t/x", []byte(big), recv)
	d := m.stats.deadLetters(1)[0]
	if len(d.Payload) != maxDeadLetterBytes || !d.Truncated {
		t.Errorf("payload %d bytes, truncated %v", len(d.Payload), d.Truncated)
	}
}

func TestParseTimestampUnits(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		unit TimeUnit
		want int64
		err  bool
	}{
		{"1764151200", TimeAuto, 1764151200e9, false},
		{"1764151200", TimeMS, 1764151200e6, false},
		{"1764151200123", TimeAuto, 1764151200123e6, false},
		{"1764151200123", TimeS, 0, true}, // beyond year 2262 in seconds
		{"1764151200123456", TimeAuto, 1764151200123456e3, false},
		{"1764151200123456789", TimeAuto, 1764151200123456789, false},
		{"1764151200123456789", TimeNS, 1764151200123456789, false},
		{"1.5", TimeS, 1.5e9, false},
		{`"2026-11-26T10:00:00Z"`, TimeAuto, ms("2026-11-26T10:00:00Z"), false},
		{`"2026-11-26 10:00:00.5Z"`, TimeAuto, ms("2026-11-26T10:00:00.5Z"), false},
		{`"1764151200"`, TimeAuto, 1764151200e9, false},
		{`"0001-01-01T00:00:00Z"`, TimeAuto, 0, true},
		{"0", TimeAuto, 0, true},
		{"99999999999999999999999", TimeAuto, 0, true},
		{"1e308", TimeAuto, 0, true},
	} {
		got, err := parseTimestamp([]byte(tc.raw), tc.unit)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseTimestamp(%s, %s) = %d, %v; want %d, err %v", tc.raw, tc.unit, got, err, tc.want, tc.err)
		}
	}
}

// checkReadings asserts the invariants every emitted reading must hold.
func checkReadings(t *testing.T, rs []wire.Reading) {
	t.Helper()
	for _, r := range rs {
		if r.Sensor == "" || math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || r.Time <= 0 || !r.Quality.Valid() {
			t.Fatalf("invalid reading %+v", r)
		}
	}
}

func FuzzMapJSON(f *testing.F) {
	for _, cs := range [][]mapCase{jsonCases, itemsCases} {
		for _, tc := range cs {
			f.Add(tc.payload)
		}
	}
	f.Add(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`)
	f.Add(`{"v":1,"ts":"2026-11-26T10:00:00Z","q":"\u0067ood"}`)
	m := newTestMapper(f, nil, nil, jsonSub, itemsSub)
	f.Fuzz(func(t *testing.T, payload string) {
		n := m.stats.rejected.Load()
		rs := m.Map(nil, "plant/s1/l1/p7/vib_x", []byte(payload), recv)
		checkReadings(t, rs)
		empty := false // an empty array is a valid message with no readings
		if v := trimWS([]byte(payload)); len(v) >= 2 && v[0] == '[' && len(trimWS(v[1:len(v)-1])) == 0 && v[len(v)-1] == ']' {
			empty = true
		}
		if len(rs) == 0 && m.stats.rejected.Load() == n && !empty {
			t.Fatalf("payload %q: no reading and no rejection recorded", payload)
		}
		checkReadings(t, m.Map(nil, "site/s1/plc3/analog", []byte(payload), recv))
	})
}

func FuzzMapPlain(f *testing.F) {
	for _, tc := range plainCases {
		f.Add(tc.payload)
	}
	m := newTestMapper(f, nil, nil, plainSub)
	f.Fuzz(func(t *testing.T, payload string) {
		n := m.stats.rejected.Load()
		rs := m.Map(nil, "legacy/a/b", []byte(payload), recv)
		checkReadings(t, rs)
		if len(rs) != 1 && m.stats.rejected.Load() != n+1 {
			t.Fatalf("payload %q: %d readings and %d rejections", payload, len(rs), m.stats.rejected.Load()-n)
		}
	})
}

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"1764151200", "1764151200123", `"2026-11-26T10:00:00Z"`, "1.5e9", `"x"`, "-1"} {
		f.Add(s, "auto")
	}
	f.Fuzz(func(t *testing.T, raw, unit string) {
		ns, err := parseTimestamp([]byte(raw), TimeUnit(unit))
		if err == nil && ns <= 0 {
			t.Fatalf("parseTimestamp(%q, %q) = %d without error", raw, unit, ns)
		}
	})
}
