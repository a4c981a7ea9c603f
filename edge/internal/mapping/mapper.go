// Package mapping turns MQTT messages into readings: it matches the topic
// against the configured patterns with named segments, builds the sensor
// id, decodes the payload (JSON with configurable paths, plain numbers,
// Sparkplug B) and gives every sensor a profile from firmware-configs/
// (chosen by the subscription's rules, adjusted by per-sensor overrides).
//
// Bad input never stops the flow: an unknown topic, a sensor without a
// profile, an unparseable payload or a non-finite value is counted per
// topic and reason (Prometheus and in-memory), kept in a bounded
// dead-letter ring with its raw payload, and skipped; the other readings of
// the same message are kept.
//
// Topic routes are cached (bounded), so mapping a plain number on a known
// topic costs no allocation beyond the caller's reading slice.
package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// maxRoutes bounds the topic cache; topics beyond it are routed uncached
// (correct, just slower). maxItems bounds readings per message.
const (
	maxRoutes = 100000
	maxItems  = 100000
)

// Options configure a Mapper.
type Options struct {
	Subscriptions []Subscription
	// Sensors are per-sensor overrides keyed by sensor id.
	Sensors  map[string]SensorOverride
	Profiles Profiles
	// Registerer receives the mapper's metrics; nil means unregistered.
	Registerer prometheus.Registerer
	// DeadLetters is the size of the dead-letter ring (default 1000).
	DeadLetters int
	// Logger, if set, gets one warning per topic and rejection reason.
	Logger *slog.Logger
}

// Filter is an MQTT subscription: a topic filter and its QoS.
type Filter struct {
	Topic string
	QoS   byte
	// Pattern is the configured pattern the filter comes from.
	Pattern string
}

type compiledRule struct {
	varIdx  int // index into route vars; -1 for the item name; -2 for id rules
	glob    *regexp.Regexp
	profile *Profile
}

type compiledSub struct {
	cfg      Subscription
	pat      *Pattern
	format   Format
	tmpl     []tmplPart // nil: default template
	usesItem bool       // the sensor id depends on the item name
	rules    []compiledRule
	def      *Profile
	// json paths
	items, value, ts, quality, sensor []string
	paths                             [4][]string // value, ts, quality, sensor
	unit                              TimeUnit
}

// sensorEntry is one sensor seen by the mapper.
type sensorEntry struct {
	id      string
	profile *Profile // nil: unmapped (no profile)
	count   atomic.Uint64
	last    atomic.Int64
}

// route is the cached outcome of matching one topic. There is one per
// topic (tens of thousands on a big site), so it holds only what mapping a
// message needs: a topic whose sensor id does not depend on the payload
// resolves to its sensor once; only item routes keep the captured topic
// segments to build ids from item names later.
type route struct {
	sub    *compiledSub
	sensor *sensorEntry // when the id does not depend on the item
	items  *itemRoute   // when it does
}

type itemRoute struct {
	vars  []string
	items map[string]*sensorEntry // by item name; guarded by Mapper.mu
}

// Mapper maps messages to readings. It is safe for concurrent use.
type Mapper struct {
	subs      []*compiledSub
	overrides map[string]SensorOverride
	profiles  Profiles
	stats     *stats
	sp        *sparkplugState

	mu      sync.RWMutex
	routes  map[string]*route
	sensors map[string]*sensorEntry
}

// New compiles the subscriptions. It returns an error when a subscription
// is invalid or names an unknown profile (config validation reports the
// same problems with line numbers).
func New(opts Options) (*Mapper, error) {
	if err := ValidateProfiles(opts.Subscriptions, opts.Sensors, opts.Profiles); err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	m := &Mapper{
		overrides: opts.Sensors,
		profiles:  opts.Profiles,
		stats:     newStats(opts.Registerer, opts.DeadLetters, opts.Logger),
		sp:        newSparkplugState(),
		routes:    map[string]*route{},
		sensors:   map[string]*sensorEntry{},
	}
	for i, s := range opts.Subscriptions {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("mapping: subscriptions[%d]: %w", i, err)
		}
		pat, _ := ParsePattern(s.Topic)
		cs := &compiledSub{cfg: s, pat: pat, format: s.FormatOrDefault(), def: opts.Profiles[s.Profile]}
		if s.SensorID != "" {
			cs.tmpl, _ = parseTemplate(s.SensorID)
			for _, p := range cs.tmpl {
				if p.isVar && p.text == ItemVar {
					cs.usesItem = true
				}
			}
		} else {
			cs.usesItem = s.JSON.Sensor != "" || cs.format == FormatSparkplug
		}
		if cs.format == FormatJSON {
			j := s.JSON
			cs.items = splitPath(j.Items)
			cs.value = splitPath(orDefault(j.Value, "value"))
			cs.ts = splitPath(orDefault(j.Timestamp, "timestamp"))
			cs.quality = splitPath(orDefault(j.Quality, "quality"))
			cs.sensor = splitPath(j.Sensor)
			cs.unit = j.TimeUnit
			cs.paths = [4][]string{cs.value, cs.ts, cs.quality, cs.sensor}
		}
		for _, r := range s.ProfileRules {
			cr := compiledRule{profile: opts.Profiles[r.Profile], varIdx: -2}
			if r.ID != "" {
				cr.glob, _ = compileGlob(r.ID)
			} else {
				cr.glob, _ = compileGlob(r.Match)
				seg := orDefault(r.Segment, "sensor")
				cr.varIdx = -1
				for k, n := range pat.Names() {
					if n == seg {
						cr.varIdx = k
					}
				}
			}
			cs.rules = append(cs.rules, cr)
		}
		m.subs = append(m.subs, cs)
	}
	return m, nil
}

// Filters returns the MQTT subscriptions to make, in config order.
func (m *Mapper) Filters() []Filter {
	out := make([]Filter, len(m.subs))
	for i, s := range m.subs {
		out[i] = Filter{Topic: s.pat.Filter(), QoS: s.cfg.QoSOrDefault(), Pattern: s.cfg.Topic}
	}
	return out
}

// Profile returns the effective profile of a sensor that has been mapped
// at least once (every reading the mapper emits has one), or of a sensor
// with an override naming a profile. The result is shared: do not modify.
func (m *Mapper) Profile(sensorID string) (*Profile, bool) {
	m.mu.RLock()
	e := m.sensors[sensorID]
	m.mu.RUnlock()
	if e != nil && e.profile != nil {
		return e.profile, true
	}
	if o, ok := m.overrides[sensorID]; ok && o.Profile != "" {
		if p := m.profiles[o.Profile]; p != nil {
			return o.apply(p), true
		}
	}
	return nil, false
}

// Map decodes one message into readings appended to dst. Rejected messages
// and items are recorded (counters, dead-letter ring) and skipped; Map
// never fails as a whole. recv is the receive time, used for readings
// without a timestamp. Readings have Seq 0; the next stage assigns it.
func (m *Mapper) Map(dst []wire.Reading, topic string, payload []byte, recv time.Time) []wire.Reading {
	m.stats.messages.Add(1)
	n0 := len(dst)
	r := m.route(topic)
	if r == nil {
		m.stats.reject(recv, topic, "", ReasonUnknownTopic, "no subscription pattern matches the topic", payload)
		m.stats.msgRejected.Add(1)
		return dst
	}
	var bad int
	switch r.sub.format {
	case FormatPlain:
		dst, bad = m.mapPlain(dst, r, topic, payload, recv)
	case FormatJSON:
		dst, bad = m.mapJSON(dst, r, topic, payload, recv)
	case FormatSparkplug:
		dst, bad = m.mapSparkplug(dst, r, topic, payload, recv)
	}
	got := len(dst) - n0
	if got > 0 {
		m.stats.readings.Add(uint64(got))
	}
	switch {
	case bad == 0:
		m.stats.msgOK.Add(1)
	case got > 0:
		m.stats.msgPartial.Add(1)
	default:
		m.stats.msgRejected.Add(1)
	}
	return dst
}

func (m *Mapper) rejectErr(r *route, recv time.Time, topic string, err error, payload []byte) {
	m.stats.reject(recv, topic, r.sub.cfg.Topic, reasonOf(err), err.Error(), payload)
}

func (m *Mapper) noProfile(r *route, recv time.Time, topic string, e *sensorEntry, payload []byte) {
	m.stats.reject(recv, topic, r.sub.cfg.Topic, ReasonNoProfile,
		fmt.Sprintf("sensor %q matches no profile rule and the subscription has no default profile", e.id), payload)
}

func (m *Mapper) mapPlain(dst []wire.Reading, r *route, topic string, payload []byte, recv time.Time) ([]wire.Reading, int) {
	e := r.sensor
	if e == nil || e.profile == nil {
		if e == nil {
			e = &sensorEntry{id: topic}
		}
		m.noProfile(r, recv, topic, e, payload)
		return dst, 1
	}
	v, err := parsePlain(payload)
	if err != nil {
		m.rejectErr(r, recv, topic, err, payload)
		return dst, 1
	}
	t := recv.UnixNano()
	e.count.Add(1)
	e.last.Store(t)
	return append(dst, wire.Reading{Sensor: e.id, Time: t, Value: v, Flags: wire.FlagNoTimestamp}), 0
}

func (m *Mapper) mapJSON(dst []wire.Reading, r *route, topic string, payload []byte, recv time.Time) ([]wire.Reading, int) {
	s := r.sub
	p := trimWS(payload)
	if len(p) == 0 {
		m.rejectErr(r, recv, topic, errEmpty, payload)
		return dst, 1
	}
	arr := p
	var rootTS []byte // with json.items: the message-level timestamp, used by items without one
	if s.items != nil {
		if raw, found, err := jsonLookup(p, s.ts); err == nil && found {
			rootTS = raw
		}
		raw, found, err := jsonLookup(p, s.items)
		switch {
		case err != nil:
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "%v", err), payload)
			return dst, 1
		case !found || len(raw) == 0 || raw[0] != '[':
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "no array at json.items path %q", s.cfg.JSON.Items), payload)
			return dst, 1
		}
		arr = raw
	}
	bad := 0
	switch arr[0] {
	case '[':
		if end, err := scanValue(arr, 0, 0); err != nil || end != len(arr) {
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "%v", errBadJSON), payload)
			return dst, 1
		}
		n := 0
		err := eachElem(arr, func(i int, item []byte) bool {
			if n >= maxItems {
				m.rejectErr(r, recv, topic, reject(ReasonTooLarge, "more than %d readings in one message; the rest is dropped", maxItems), payload)
				bad++
				return false
			}
			n++
			var err error
			dst, err = m.jsonItem(dst, r, item, rootTS, recv)
			if err != nil {
				m.rejectErr(r, recv, topic, fmt.Errorf("item %d: %w", i, err), payload)
				bad++
			}
			return true
		})
		if err != nil {
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "%v", err), payload)
			bad++
		}
	case '{':
		if end, err := scanValue(arr, 0, 0); err != nil || end != len(arr) {
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "%v", errBadJSON), payload)
			return dst, 1
		}
		var err error
		if dst, err = m.jsonItem(dst, r, arr, nil, recv); err != nil {
			m.rejectErr(r, recv, topic, err, payload)
			bad++
		}
	default:
		// A bare JSON number (or numeric string) is a reading too.
		if end, err := scanValue(arr, 0, 0); err != nil || end != len(arr) {
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "not JSON"), payload)
			return dst, 1
		}
		if r.sensor == nil || r.sensor.profile == nil {
			return m.mapPlain(dst, r, topic, payload, recv) // reports no_profile
		}
		v, err := parseJSONValue(arr)
		if err != nil {
			m.rejectErr(r, recv, topic, err, payload)
			return dst, 1
		}
		t := recv.UnixNano()
		r.sensor.count.Add(1)
		r.sensor.last.Store(t)
		dst = append(dst, wire.Reading{Sensor: r.sensor.id, Time: t, Value: v, Flags: wire.FlagNoTimestamp})
	}
	return dst, bad
}

// jsonItem decodes one reading object; rootTS is the timestamp to use when
// the item has none (nil: the receive time).
func (m *Mapper) jsonItem(dst []wire.Reading, r *route, item, rootTS []byte, recv time.Time) ([]wire.Reading, error) {
	s := r.sub
	if len(item) == 0 || item[0] != '{' {
		return dst, reject(ReasonBadPayload, "a reading must be a JSON object")
	}
	var f [4][]byte // value, timestamp, quality, sensor name
	if err := jsonFields(item, &s.paths, &f); err != nil {
		return dst, reject(ReasonBadPayload, "%v", err)
	}
	e := r.sensor
	if s.usesItem {
		var name []byte
		if s.sensor != nil {
			raw := f[3]
			if len(raw) == 0 || raw[0] == 'n' {
				return dst, reject(ReasonNoSensor, "no sensor name at json.sensor path %q", s.cfg.JSON.Sensor)
			}
			if raw[0] == '"' {
				name = raw[1 : len(raw)-1]
				if bytes.IndexByte(name, '\\') >= 0 {
					// Escapes (rare): decode them, so "a\/b" names a/b.
					var unq string
					if err := json.Unmarshal(raw, &unq); err != nil {
						return dst, reject(ReasonBadPayload, "sensor name at %q: %v", s.cfg.JSON.Sensor, err)
					}
					name = []byte(unq)
				}
			} else if raw[0] == '{' || raw[0] == '[' {
				return dst, reject(ReasonNoSensor, "sensor name at %q is not a string", s.cfg.JSON.Sensor)
			} else {
				name = raw
			}
			if len(name) == 0 {
				return dst, reject(ReasonNoSensor, "empty sensor name")
			}
		}
		e = m.itemEntry(r, name)
	}
	if e == nil || e.profile == nil {
		id := ""
		if e != nil {
			id = e.id
		}
		return dst, &decodeError{reason: ReasonNoProfile, detail: fmt.Sprintf("sensor %q matches no profile rule and the subscription has no default profile", id)}
	}
	if f[0] == nil {
		return dst, reject(ReasonNoValue, "no value at json.value path %q", orDefault(s.cfg.JSON.Value, "value"))
	}
	v, err := parseJSONValue(f[0])
	if err != nil {
		return dst, err
	}
	rd := wire.Reading{Sensor: e.id, Value: v}
	raw := f[1]
	if raw == nil {
		raw = rootTS
	}
	if raw != nil && raw[0] != 'n' {
		if rd.Time, err = parseTimestamp(raw, s.unit); err != nil {
			return dst, err
		}
	} else {
		rd.Time = recv.UnixNano()
		rd.Flags |= wire.FlagNoTimestamp
	}
	if f[2] != nil {
		if rd.Quality, err = parseQuality(f[2]); err != nil {
			return dst, err
		}
	}
	e.count.Add(1)
	e.last.Store(rd.Time)
	return append(dst, rd), nil
}

// route finds (and caches) the route of a topic; nil when no subscription
// matches.
func (m *Mapper) route(topic string) *route {
	m.mu.RLock()
	r := m.routes[topic]
	m.mu.RUnlock()
	if r != nil {
		return r
	}
	for _, s := range m.subs {
		vars, ok := s.pat.Match(topic, nil)
		if !ok {
			continue
		}
		// Copy the captured values out of topic so the cache does not pin
		// message buffers (topic strings are per message).
		topic = strings.Clone(topic)
		vars, _ = s.pat.Match(topic, vars[:0])
		r = &route{sub: s}
		if !s.usesItem {
			r.sensor = m.entry(s, vars, sharedID(topic, m.buildID(s, vars, "")), "")
		} else {
			r.items = &itemRoute{vars: vars, items: map[string]*sensorEntry{}}
		}
		m.mu.Lock()
		if old := m.routes[topic]; old != nil {
			r = old
		} else if len(m.routes) < maxRoutes {
			m.routes[topic] = r
		}
		m.mu.Unlock()
		return r
	}
	return nil
}

// itemEntry returns the sensor of an item name under route r.
func (m *Mapper) itemEntry(r *route, name []byte) *sensorEntry {
	it := r.items
	m.mu.RLock()
	e := it.items[string(name)]
	m.mu.RUnlock()
	if e != nil {
		return e
	}
	n := string(name)
	e = m.entry(r.sub, it.vars, m.buildID(r.sub, it.vars, n), n)
	m.mu.Lock()
	if old := it.items[n]; old != nil {
		e = old
	} else if len(it.items) < maxRoutes {
		it.items[n] = e
	}
	m.mu.Unlock()
	return e
}

func (m *Mapper) buildID(s *compiledSub, vars []string, item string) string {
	var b strings.Builder
	if s.tmpl == nil {
		for _, v := range vars {
			if v == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('/')
			}
			b.WriteString(v)
		}
		if item != "" {
			if b.Len() > 0 {
				b.WriteByte('/')
			}
			b.WriteString(item)
		}
		return b.String()
	}
	names := s.pat.Names()
	for _, p := range s.tmpl {
		if !p.isVar {
			b.WriteString(p.text)
			continue
		}
		if p.text == ItemVar {
			b.WriteString(item)
			continue
		}
		for k, n := range names {
			if n == p.text && k < len(vars) {
				b.WriteString(vars[k])
			}
		}
	}
	return b.String()
}

// sharedID returns id as a substring of topic when topic contains it (the
// default template joins the segments with '/', so the id is usually the
// topic's tail), so that the id costs no memory of its own beyond the
// cached topic.
func sharedID(topic, id string) string {
	if i := strings.Index(topic, id); i >= 0 {
		return topic[i : i+len(id)]
	}
	return id
}

// entry returns the shared sensor entry for id, resolving its profile
// (vars are the topic segments the route captured).
func (m *Mapper) entry(sub *compiledSub, vars []string, id, item string) *sensorEntry {
	m.mu.RLock()
	e := m.sensors[id]
	m.mu.RUnlock()
	if e != nil {
		return e
	}
	e = &sensorEntry{id: id, profile: m.resolve(sub, vars, id, item)}
	m.mu.Lock()
	if old := m.sensors[id]; old != nil {
		e = old
	} else if len(m.sensors) < maxRoutes {
		m.sensors[id] = e
	}
	m.mu.Unlock()
	return e
}

// resolve picks the profile of a sensor: the override's profile, else the
// first matching rule, else the subscription's default; then applies the
// override's fields.
func (m *Mapper) resolve(sub *compiledSub, vars []string, id, item string) *Profile {
	var base *Profile
	o, hasOverride := m.overrides[id]
	if hasOverride && o.Profile != "" {
		base = m.profiles[o.Profile]
	}
	if base == nil {
		for _, rule := range sub.rules {
			var subject string
			switch {
			case rule.varIdx == -2:
				subject = id
			case rule.varIdx == -1:
				subject = item
			case rule.varIdx < len(vars):
				subject = vars[rule.varIdx]
			}
			if rule.glob.MatchString(subject) {
				base = rule.profile
				break
			}
		}
	}
	if base == nil {
		base = sub.def
	}
	if base == nil {
		return nil
	}
	if hasOverride {
		return o.apply(base)
	}
	return base
}
