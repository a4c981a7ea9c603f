package agent

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/smartmaint/smartmaint/edge/internal/admin"
	"github.com/smartmaint/smartmaint/edge/internal/mapping"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

const ts0 = int64(1764151200000) // ms

// sparkplugDDATA encodes a Sparkplug B payload with named double metrics.
func sparkplugPayload(tsMS uint64, names []string, vals []float64) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, tsMS)
	for i, n := range names {
		var m []byte
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendString(m, n)
		m = protowire.AppendTag(m, 4, protowire.VarintType)
		m = protowire.AppendVarint(m, 10) // Double
		m = protowire.AppendTag(m, 13, protowire.Fixed64Type)
		m = protowire.AppendFixed64(m, math.Float64bits(vals[i]))
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b
}

// TestIngestManyTopicsAllFormats publishes to 240 topics in every payload
// format through a real Mosquitto and checks each reading that reaches the
// sink, the admin endpoint's status, metrics and health.
func TestIngestManyTopicsAllFormats(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, "")
	p := "t" + testenv.RandomID(3)
	cfg, profiles := testConfig(t, "  url: "+mq.URL, fmt.Sprintf(`
  - topic: %[1]s/plant/{site}/{line}/{asset}/{sensor}
    json: {value: v, timestamp: ts, quality: q}
    profile_rules:
      - {match: "vib_*", profile: triaxial_vibration}
      - {match: "temp", profile: bearing_temperature}
  - topic: %[1]s/legacy/{asset}/{sensor}
    format: plain
    qos: 0
    profile: generic_4_20ma
  - topic: %[1]s/plc/{device}/analog
    json: {items: ch, sensor: tag, value: mA, timestamp: time}
    sensor_id: "plc/{device}/{item}"
    qos: 2
    profile: generic_4_20ma
  - topic: spBv1.0/%[1]s/+/{node}/{device#}
    format: sparkplug
    profile: flow_meter`, p))
	sink := &recordingSink{}
	r := startAgent(t, cfg, profiles, sink)
	pub := publisher(t, mq.URL)

	want := map[string]int{}
	// JSON: 3 sites × 4 lines × 5 assets × 4 sensors = 240 topics, 2 messages each.
	for site := range 3 {
		for line := range 4 {
			for asset := range 5 {
				for _, sensor := range []string{"vib_x", "vib_y", "vib_z", "temp"} {
					topic := fmt.Sprintf("%s/plant/s%d/l%d/a%d/%s", p, site, line, asset, sensor)
					for i := range 2 {
						publish(t, pub, 1, topic, fmt.Appendf(nil, `{"v": %d.5, "ts": %d, "q": "good"}`, i, ts0+int64(i)*1000))
					}
					want[fmt.Sprintf("s%d/l%d/a%d/%s", site, line, asset, sensor)] = 2
				}
			}
		}
	}
	// Plain, QoS 0 subscription (published QoS 1 so the publish is confirmed).
	for i := range 10 {
		publish(t, pub, 1, fmt.Sprintf("%s/legacy/tank%d/level", p, i), []byte(fmt.Sprintf("%d.25", i)))
		want[fmt.Sprintf("tank%d/level", i)] = 1
	}
	// JSON batches with per-item names, QoS 2.
	publish(t, pub, 2, p+"/plc/plc3/analog", []byte(`{"time":"2026-11-26T10:00:00Z","ch":[{"tag":"AI01","mA":12.5},{"tag":"AI02","mA":4.0}]}`))
	want["plc/plc3/AI01"], want["plc/plc3/AI02"] = 1, 1
	// Sparkplug B.
	publish(t, pub, 0, "spBv1.0/"+p+"/DDATA/gw1/meter1", sparkplugPayload(uint64(ts0), []string{"FlowRate", "Totalizer"}, []float64{120.5, 99}))
	want["gw1/meter1/FlowRate"], want["gw1/meter1/Totalizer"] = 1, 1
	// Unmapped and bad input.
	publish(t, pub, 1, p+"/plant/s0/l0/a0/humidity", []byte(`{"v": 1}`))
	publish(t, pub, 1, p+"/plant/s0/l0/a0/vib_x", []byte(`{"v": "NaN"}`))

	total := 0
	for _, n := range want {
		total += n
	}
	waitFor(t, 20*time.Second, fmt.Sprintf("%d readings", total), func() bool { return sink.count() >= total })
	got := sensorIDs(sink.readings())
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("readings per sensor (-want +got):\n%s", diff)
	}
	// Spot-check decoded values and timestamps.
	for _, rd := range sink.readings() {
		switch rd.Sensor {
		case "s1/l2/a3/temp":
			if rd.Time != ts0*1e6 && rd.Time != (ts0+1000)*1e6 {
				t.Errorf("%s time %d", rd.Sensor, rd.Time)
			}
		case "tank3/level":
			if rd.Value != 3.25 || rd.Flags&wire.FlagNoTimestamp == 0 {
				t.Errorf("plain reading %+v", rd)
			}
		case "plc/plc3/AI01":
			if rd.Value != 12.5 || rd.Time != time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).UnixNano() {
				t.Errorf("item reading %+v", rd)
			}
		case "gw1/meter1/FlowRate":
			if rd.Value != 120.5 || rd.Time != ts0*1e6 {
				t.Errorf("sparkplug reading %+v", rd)
			}
		}
	}
	if p, ok := r.a.Mapper().Profile("s0/l0/a0/vib_x"); !ok || p.Name != "triaxial_vibration" || p.Unit != "mm/s" {
		t.Errorf("Profile(vib_x) = %+v, %v", p, ok)
	}

	// The admin endpoint.
	base := "http://" + r.a.AdminAddr()
	// The agent generated its admin token in its data directory.
	token, err := admin.ReadToken(cfg.Admin.TokenPath(cfg.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range []string{"/status", "/metrics"} {
		if code := getJSON(t, base+ep, "", nil); code != http.StatusUnauthorized {
			t.Errorf("%s without the token = %d; want 401", ep, code)
		}
	}
	var st admin.Status
	waitFor(t, 10*time.Second, "status shows the rejections", func() bool {
		getJSON(t, base+"/status?sensors=all", token, &st)
		return st.Mapping.Rejected >= 2
	})
	if st.Broker.State != "connected" || len(st.Subscriptions) != 4 || st.Mapping.Readings != uint64(total) || len(st.Mapping.Sensors) != len(want) {
		t.Errorf("status: broker %q, %d subscriptions, %d readings, %d sensors", st.Broker.State, len(st.Subscriptions), st.Mapping.Readings, len(st.Mapping.Sensors))
	}
	if len(st.Mapping.Unmapped) != 1 || st.Mapping.Unmapped[0].Topic != p+"/plant/s0/l0/a0/humidity" || st.Mapping.Unmapped[0].Reason != mapping.ReasonNoProfile {
		t.Errorf("unmapped: %+v", st.Mapping.Unmapped)
	}
	if len(st.Mapping.Errors) != 1 || st.Mapping.Errors[0].Reason != mapping.ReasonNonFinite {
		t.Errorf("errors: %+v", st.Mapping.Errors)
	}
	dl := map[string]string{}
	for _, d := range st.Mapping.DeadLetters {
		dl[d.Reason] = string(d.Payload)
	}
	if diff := cmp.Diff(map[string]string{mapping.ReasonNonFinite: `{"v": "NaN"}`, mapping.ReasonNoProfile: `{"v": 1}`}, dl); diff != "" {
		t.Errorf("dead letters by reason (-want +got):\n%s", diff)
	}
	if code := getJSON(t, base+"/readyz", "", nil); code != http.StatusOK {
		t.Errorf("/readyz = %d", code)
	}
	if code := getJSON(t, base+"/healthz", "", nil); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf("smartmaint_edge_readings_mapped_total %d", total),
		`smartmaint_edge_decode_errors_total{reason="non_finite",subscription="` + p + `/plant/{site}/{line}/{asset}/{sensor}"} 1`,
		"smartmaint_edge_broker_connected 1",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	r.stop(t)
}

// TestPoisonDoesNotStallGoodReadings interleaves poison payloads with good
// ones on one QoS 1 topic: every good reading arrives, every poison
// message is counted and acknowledged (a new session after restart gets
// nothing redelivered).
func TestPoisonDoesNotStallGoodReadings(t *testing.T) {
	t.Parallel()
	mq := testenv.StartMosquitto(t, "")
	cfg, profiles := testConfig(t, "  url: "+mq.URL+"\n  client_id: poison-test", `
  - topic: p/{asset}/{sensor}
    json: {value: v}
    profile: generic_4_20ma`)
	sink := &recordingSink{}
	r := startAgent(t, cfg, profiles, sink)
	pub := publisher(t, mq.URL)
	poison := []string{`{"v": "NaN"}`, `{"v": 1e999}`, "\xff\xfe garbage", `{"v":`, ``, `{"x": 1}`, `[{"v": 1}, {"v": "Infinity"}]`}
	good := 0
	for i := range 300 {
		if i%3 == 0 {
			k := (i / 3) % len(poison)
			publish(t, pub, 1, "p/a/s", []byte(poison[k]))
			if k == len(poison)-1 {
				good++ // the mixed batch carries one good reading
			}
			continue
		}
		publish(t, pub, 1, fmt.Sprintf("p/a/s%d", i%7), fmt.Appendf(nil, `{"v": %d}`, i))
		good++
	}
	waitFor(t, 20*time.Second, "all good readings", func() bool { return sink.count() >= good })
	st := r.a.Status()
	if st.Mapping.Rejected != 100 {
		t.Errorf("rejected = %d, want 100", st.Mapping.Rejected)
	}
	r.stop(t)
	if n := sink.count(); n != good {
		t.Errorf("readings = %d, want %d", n, good)
	}
	// Restart with the same session: nothing was left unacknowledged.
	sink2 := &recordingSink{}
	r2 := startAgent(t, cfg, profiles, sink2)
	publish(t, pub, 1, "p/a/last", []byte(`{"v": 1}`))
	waitFor(t, 10*time.Second, "last reading", func() bool { return sink2.count() >= 1 })
	time.Sleep(300 * time.Millisecond) // let any (wrong) redelivery arrive
	if n := sink2.count(); n != 1 || r2.a.Status().Mapping.Rejected != 0 {
		t.Errorf("after restart: %d readings, %d rejected; want 1 and 0 (nothing redelivered)", n, r2.a.Status().Mapping.Rejected)
	}
}
