package mapping

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Discovery collects what `sm-edge discover` sees on a broker and proposes
// subscriptions for it. It is not safe for concurrent use.
type Discovery struct {
	topics map[string]*TopicInfo
	// Dropped counts messages on new topics beyond MaxTopics.
	Dropped int
}

// MaxDiscoverTopics bounds how many distinct topics Discovery tracks.
const MaxDiscoverTopics = 20000

// TopicInfo is what was seen on one topic.
type TopicInfo struct {
	Topic  string
	Count  int
	Bytes  int
	First  time.Time
	Last   time.Time
	Format string // plain, json, json-array, sparkplug, text, binary
	// JSON paths inferred from the last payload.
	Items, Value, Timestamp, Quality, Sensor string
	Fields                                   []string
	Sample                                   string
}

// NewDiscovery returns an empty Discovery.
func NewDiscovery() *Discovery { return &Discovery{topics: map[string]*TopicInfo{}} }

// Observe records one message.
func (d *Discovery) Observe(topic string, payload []byte, at time.Time) {
	ti := d.topics[topic]
	if ti == nil {
		if len(d.topics) >= MaxDiscoverTopics {
			d.Dropped++
			return
		}
		ti = &TopicInfo{Topic: topic, First: at}
		d.topics[topic] = ti
	}
	ti.Count++
	ti.Bytes += len(payload)
	ti.Last = at
	if ti.Count <= 3 || ti.Format == "text" || ti.Format == "binary" {
		inferFormat(ti, payload)
	}
}

// Topics returns the topics seen, sorted by name.
func (d *Discovery) Topics() []*TopicInfo {
	out := make([]*TopicInfo, 0, len(d.topics))
	for _, t := range d.topics {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

var (
	valueNames   = []string{"value", "v", "val", "reading", "y", "data"}
	timeNames    = []string{"timestamp", "ts", "time", "t", "datetime", "date"}
	qualityNames = []string{"quality", "q", "status", "qc"}
	sensorNames  = []string{"name", "tag", "sensor", "id", "channel", "metric", "key"}
)

func inferFormat(ti *TopicInfo, p []byte) {
	ti.Sample = sample(p)
	if strings.HasPrefix(ti.Topic, "spBv1.0/") {
		ti.Format = string(FormatSparkplug)
		return
	}
	if _, err := parsePlain(p); err == nil {
		ti.Format = string(FormatPlain)
		return
	}
	v := trimWS(p)
	if len(v) > 0 && (v[0] == '{' || v[0] == '[') {
		if end, err := scanValue(v, 0, 0); err == nil && end == len(v) {
			inferJSON(ti, v)
			return
		}
	}
	if utf8.Valid(p) {
		ti.Format = "text"
	} else {
		ti.Format = "binary"
	}
}

func inferJSON(ti *TopicInfo, v []byte) {
	ti.Format = string(FormatJSON)
	ti.Items, ti.Sensor = "", ""
	item := v
	if v[0] == '{' {
		// An object with an array of objects inside: readings under a key.
		for _, k := range objectKeys(v) {
			raw, _, _ := jsonLookup(v, []string{k})
			if len(raw) > 0 && raw[0] == '[' {
				if first, ok := firstElem(raw); ok && first[0] == '{' {
					ti.Items, item = k, first
					break
				}
			}
		}
	} else {
		first, ok := firstElem(v)
		if !ok || first[0] != '{' {
			ti.Format = "json (unsupported shape)"
			return
		}
		ti.Format, item = "json-array", first
	}
	keys := objectKeys(item)
	ti.Fields = keys
	ti.Value = pick(item, keys, valueNames, true)
	ti.Timestamp = pick(item, keys, timeNames, false)
	ti.Quality = pick(item, keys, qualityNames, false)
	if ti.Items != "" || ti.Format == "json-array" {
		ti.Sensor = pick(item, keys, sensorNames, false)
	}
	if ti.Value == "" {
		// The only numeric field that is not the timestamp.
		var nums []string
		for _, k := range keys {
			if k == ti.Timestamp || k == ti.Quality {
				continue
			}
			raw, _, _ := jsonLookup(item, []string{k})
			if _, err := parseJSONValue(raw); err == nil && len(raw) > 0 && raw[0] != 't' && raw[0] != 'f' {
				nums = append(nums, k)
			}
		}
		if len(nums) == 1 {
			ti.Value = nums[0]
		}
	}
}

func pick(item []byte, keys, names []string, numeric bool) string {
	for _, n := range names {
		for _, k := range keys {
			if !strings.EqualFold(k, n) {
				continue
			}
			if numeric {
				raw, _, _ := jsonLookup(item, []string{k})
				if _, err := parseJSONValue(raw); err != nil {
					continue
				}
			}
			return k
		}
	}
	return ""
}

func firstElem(arr []byte) ([]byte, bool) {
	var out []byte
	_ = eachElem(arr, func(_ int, e []byte) bool { out = e; return false })
	return out, len(out) > 0
}

// objectKeys returns the keys of a JSON object, in order.
func objectKeys(v []byte) []string {
	var keys []string
	i := skipWS(v, 1)
	for i < len(v) && v[i] == '"' {
		end, err := scanString(v, i)
		if err != nil {
			return keys
		}
		if k, ok := jsonString(v[i:end]); ok {
			keys = append(keys, k)
		}
		i = skipWS(v, end)
		if i >= len(v) || v[i] != ':' {
			return keys
		}
		i = skipWS(v, i+1)
		if i, err = scanValue(v, i, 1); err != nil {
			return keys
		}
		i = skipWS(v, i)
		if i >= len(v) || v[i] != ',' {
			return keys
		}
		i = skipWS(v, i+1)
	}
	return keys
}

func sample(p []byte) string {
	if !utf8.Valid(p) {
		return fmt.Sprintf("(%d bytes binary)", len(p))
	}
	s := string(bytes.TrimSpace(p))
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		s = strconv.Quote(s)
	}
	return s
}

// Proposal groups the topics seen by payload shape and topic depth, and
// proposes one subscription per group: levels that are the same in every
// topic stay literal, the others become variables (named from the right:
// sensor, asset, line, site, then levelN).
func (d *Discovery) Proposal() []Subscription {
	type group struct {
		key    string
		topics []*TopicInfo
	}
	groups := map[string]*group{}
	var order []string
	for _, t := range d.Topics() {
		switch t.Format {
		case string(FormatPlain), string(FormatJSON), "json-array", string(FormatSparkplug):
		default:
			continue
		}
		depth := strings.Count(t.Topic, "/")
		key := fmt.Sprintf("%s|%d|%s|%s|%s|%s|%s", t.Format, depth, t.Items, t.Value, t.Timestamp, t.Quality, t.Sensor)
		if t.Format == string(FormatSparkplug) {
			key = "sparkplug"
		}
		g := groups[key]
		if g == nil {
			g = &group{key: key}
			groups[key] = g
			order = append(order, key)
		}
		g.topics = append(g.topics, t)
	}
	var subs []Subscription
	for _, k := range order {
		g := groups[k]
		t0 := g.topics[0]
		if t0.Format == string(FormatSparkplug) {
			subs = append(subs, Subscription{Topic: "spBv1.0/{group}/+/{node}/{device#}", Format: FormatSparkplug, QoS: intp(0)})
			continue
		}
		levels := make([][]string, len(g.topics))
		for i, t := range g.topics {
			levels[i] = strings.Split(t.Topic, "/")
		}
		n := len(levels[0])
		variable := make([]bool, n)
		for l := 0; l < n; l++ {
			for _, lv := range levels[1:] {
				if lv[l] != levels[0][l] {
					variable[l] = true
				}
			}
		}
		itemBased := t0.Sensor != ""
		names := []string{"sensor", "asset", "line", "site"}
		if itemBased {
			names = []string{"device", "site"}
		}
		if len(g.topics) == 1 && !itemBased {
			// One topic: make its last level the sensor.
			variable[n-1] = true
		}
		parts := make([]string, n)
		var lastVals []string
		next := 0
		for l := n - 1; l >= 0; l-- {
			if !variable[l] {
				parts[l] = levels[0][l]
				continue
			}
			name := "level" + strconv.Itoa(l+1)
			if next < len(names) {
				name = names[next]
			}
			if next == 0 {
				for _, lv := range levels {
					lastVals = append(lastVals, lv[l])
				}
			}
			next++
			parts[l] = "{" + name + "}"
		}
		s := Subscription{Topic: strings.Join(parts, "/"), QoS: intp(1)}
		if t0.Format == string(FormatPlain) {
			s.Format = FormatPlain
		} else {
			s.Format = FormatJSON
			s.JSON = JSONFormat{Items: t0.Items, Value: t0.Value, Timestamp: t0.Timestamp, Quality: t0.Quality, Sensor: t0.Sensor}
			if s.JSON.Value == "" {
				s.JSON.Value = "FIXME"
			}
		}
		if !itemBased {
			s.ProfileRules = proposeRules(lastVals)
		}
		subs = append(subs, s)
	}
	return subs
}

func intp(i int) *int { return &i }

// profileHints maps name fragments to the built-in profiles.
var profileHints = []struct{ frag, profile string }{
	{"vib", "triaxial_vibration"},
	{"env", "vibration_acceleration"},
	{"accel", "vibration_acceleration"},
	{"bearing", "bearing_temperature"},
	{"winding", "motor_winding_temperature"},
	{"temp", "bearing_temperature"},
	{"current", "motor_current"},
	{"amp", "motor_current"},
	{"press", "pressure_transmitter"},
	{"flow", "flow_meter"},
}

func proposeRules(names []string) []ProfileRule {
	var rules []ProfileRule
	used := map[string]bool{}
	for _, h := range profileHints {
		for _, n := range names {
			if strings.Contains(strings.ToLower(n), h.frag) && !used[h.frag] {
				used[h.frag] = true
				rules = append(rules, ProfileRule{Match: "*" + h.frag + "*", Profile: h.profile})
				break
			}
		}
	}
	return rules
}

// Rate returns messages per second over the observation time.
func (t *TopicInfo) Rate(observed time.Duration) float64 {
	if observed <= 0 {
		return 0
	}
	return math.Round(float64(t.Count)/observed.Seconds()*100) / 100
}
