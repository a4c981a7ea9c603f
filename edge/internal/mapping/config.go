package mapping

import (
	"errors"
	"fmt"
	"strings"

	"github.com/smartmaint/smartmaint/edge/internal/config/strictyaml"
)

// ItemVar is the sensor-id template variable holding the per-item sensor
// name of a JSON array payload (json.sensor) or a Sparkplug metric name.
const ItemVar = "item"

// Subscription is one entry of the config's subscriptions list: a topic
// pattern, its QoS, how to decode its payloads and how to choose each
// sensor's profile.
type Subscription struct {
	// Topic is a pattern with named segments, e.g. plant/{site}/{line}/{asset}/{sensor}.
	Topic string `yaml:"topic"`
	// QoS is the MQTT subscription QoS (0, 1 or 2); default 1.
	QoS *int `yaml:"qos,omitempty"`
	// Format is json (default), plain or sparkplug.
	Format Format `yaml:"format,omitempty"`
	// JSON configures the json format.
	JSON JSONFormat `yaml:"json,omitempty"`
	// SensorID is a template of the sensor id built from the pattern's
	// variables and {item}; default: the non-empty variables joined by "/".
	SensorID string `yaml:"sensor_id,omitempty"`
	// Profile is the profile of sensors that no rule matches; "" means such
	// sensors are unmapped (counted and dead-lettered, not forwarded).
	Profile string `yaml:"profile,omitempty"`
	// ProfileRules choose a profile per sensor; the first match wins.
	ProfileRules []ProfileRule `yaml:"profile_rules,omitempty"`
}

// JSONFormat gives the paths (dot-separated keys; decimal indexes select
// array elements) of a reading's fields in a JSON payload.
type JSONFormat struct {
	// Items is the path of an array of readings; "" means the payload is one
	// reading object, or an array of reading objects.
	Items string `yaml:"items,omitempty"`
	// Value is the path of the value in a reading; default "value".
	Value string `yaml:"value,omitempty"`
	// Timestamp is the path of the timestamp; default "timestamp". With
	// Items, an item without it uses the same path at the message's root.
	// A reading without any gets the receive time and wire.FlagNoTimestamp.
	Timestamp string `yaml:"timestamp,omitempty"`
	// TimeUnit reads numeric timestamps: auto (default), s, ms, us or ns.
	TimeUnit TimeUnit `yaml:"time_unit,omitempty"`
	// Quality is the path of the quality; default "quality". Absent means good.
	Quality string `yaml:"quality,omitempty"`
	// Sensor is the path of a per-item sensor name, available as {item} in
	// sensor_id and appended to the topic's id by default.
	Sensor string `yaml:"sensor,omitempty"`
}

// ProfileRule picks a profile for sensors whose variable (Segment, default
// "sensor") matches the glob Match, or whose whole sensor id matches the
// glob ID. In globs "*" matches within one level (not "/"), "**" across
// levels, "?" one character, and "[abc]" a character class.
type ProfileRule struct {
	Segment string `yaml:"segment,omitempty"`
	Match   string `yaml:"match,omitempty"`
	ID      string `yaml:"id,omitempty"`
	Profile string `yaml:"profile"`
}

// QoSOrDefault returns the configured QoS, or 1.
func (s Subscription) QoSOrDefault() byte {
	if s.QoS == nil {
		return 1
	}
	return byte(*s.QoS)
}

// FormatOrDefault returns the configured format, or json.
func (s Subscription) FormatOrDefault() Format {
	if s.Format == "" {
		return FormatJSON
	}
	return s.Format
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Validate checks the subscription on its own (profile names are checked
// against the loaded set by ValidateProfiles). Errors are "path: message".
func (s Subscription) Validate() error {
	var errs []error
	add := func(p, f string, a ...any) { errs = append(errs, strictyaml.Errorf(p, f, a...)) }
	pat, err := ParsePattern(s.Topic)
	if err != nil {
		add("topic", "%v", err)
	}
	if s.QoS != nil && (*s.QoS < 0 || *s.QoS > 2) {
		add("qos", "must be 0, 1 or 2 (got %d)", *s.QoS)
	}
	switch s.FormatOrDefault() {
	case FormatJSON:
		for _, f := range []struct{ name, val string }{{"items", s.JSON.Items}, {"value", s.JSON.Value}, {"timestamp", s.JSON.Timestamp}, {"quality", s.JSON.Quality}, {"sensor", s.JSON.Sensor}} {
			if f.val != "" && (strings.HasPrefix(f.val, ".") || strings.HasSuffix(f.val, ".") || strings.Contains(f.val, "..")) {
				add("json."+f.name, "invalid path %q (dot-separated keys, e.g. data.value)", f.val)
			}
		}
		switch s.JSON.TimeUnit {
		case "", TimeAuto, TimeS, TimeMS, TimeUS, TimeNS:
		default:
			add("json.time_unit", "must be auto, s, ms, us or ns (got %q)", s.JSON.TimeUnit)
		}
	case FormatPlain, FormatSparkplug:
		if s.JSON != (JSONFormat{}) {
			add("json", "only allowed with format: json")
		}
		if s.FormatOrDefault() == FormatSparkplug && pat != nil && !strings.HasPrefix(s.Topic, "spBv1.0/") {
			add("topic", "a sparkplug subscription's topic must start with spBv1.0/ (e.g. spBv1.0/{group}/+/{node}/{device#})")
		}
	default:
		add("format", "must be json, plain or sparkplug (got %q)", s.Format)
	}
	vars := map[string]bool{}
	if pat != nil {
		for _, n := range pat.Names() {
			vars[n] = true
		}
	}
	itemOK := s.JSON.Sensor != "" || s.FormatOrDefault() == FormatSparkplug
	if itemOK {
		vars[ItemVar] = true
	}
	if s.SensorID != "" && pat != nil {
		parts, err := parseTemplate(s.SensorID)
		if err != nil {
			add("sensor_id", "%v", err)
		}
		for _, p := range parts {
			if p.isVar && !vars[p.text] {
				add("sensor_id", "uses {%s}, which the topic pattern does not define", p.text)
			}
		}
	}
	if pat != nil && len(pat.Names()) == 0 && !itemOK && s.SensorID == "" {
		add("topic", "has no {variable} to build a sensor id from; name at least one level, e.g. {sensor}")
	}
	for i, r := range s.ProfileRules {
		at := fmt.Sprintf("profile_rules[%d]", i)
		if (r.Match == "") == (r.ID == "") {
			add(at, "set exactly one of match (a glob on a variable) and id (a glob on the sensor id)")
		}
		if r.ID != "" && r.Segment != "" {
			add(at+".segment", "only used with match")
		}
		seg := orDefault(r.Segment, "sensor")
		if r.Match != "" && pat != nil && !vars[seg] {
			add(at+".segment", "the topic pattern has no {%s}", seg)
		}
		for _, g := range []string{r.Match, r.ID} {
			if _, err := compileGlob(g); err != nil {
				add(at, "%v", err)
			}
		}
		if r.Profile == "" {
			add(at+".profile", "required")
		}
	}
	return errors.Join(errs...)
}

// ValidateProfiles checks that every profile the subscriptions and
// overrides name exists in ps. Paths are relative to the config root.
func ValidateProfiles(subs []Subscription, sensors map[string]SensorOverride, ps Profiles) error {
	var errs []error
	known := func(n string) bool { _, ok := ps[n]; return ok }
	hint := func() string {
		names := ps.Names()
		if len(names) > 12 {
			names = append(names[:12], "…")
		}
		return strings.Join(names, ", ")
	}
	for i, s := range subs {
		if s.Profile != "" && !known(s.Profile) {
			errs = append(errs, strictyaml.Errorf(fmt.Sprintf("subscriptions[%d].profile", i), "unknown profile %q (known: %s)", s.Profile, hint()))
		}
		for j, r := range s.ProfileRules {
			if r.Profile != "" && !known(r.Profile) {
				errs = append(errs, strictyaml.Errorf(fmt.Sprintf("subscriptions[%d].profile_rules[%d].profile", i, j), "unknown profile %q (known: %s)", r.Profile, hint()))
			}
		}
	}
	for id, o := range sensors {
		at := "sensors[" + id + "]"
		if id == "" {
			errs = append(errs, strictyaml.Errorf(at, "empty sensor id"))
		}
		var base *Profile
		if o.Profile != "" {
			if !known(o.Profile) {
				errs = append(errs, strictyaml.Errorf(at+".profile", "unknown profile %q (known: %s)", o.Profile, hint()))
				continue
			}
			base = ps[o.Profile]
		}
		if base != nil {
			merged := o.apply(base)
			if err := merged.Range.validate("range"); err != nil {
				errs = append(errs, strictyaml.Prefix(at, err))
			}
			if err := merged.Limits.validate("limits", merged.Range); err != nil {
				errs = append(errs, strictyaml.Prefix(at, err))
			}
		} else if o.Limits != nil {
			if err := o.Limits.validate("limits", Range{}); err != nil {
				errs = append(errs, strictyaml.Prefix(at, err))
			}
		}
	}
	return errors.Join(errs...)
}

type tmplPart struct {
	text  string
	isVar bool
}

func parseTemplate(s string) ([]tmplPart, error) {
	var parts []tmplPart
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			if strings.ContainsRune(s, '}') {
				return nil, fmt.Errorf("unbalanced \"}\"")
			}
			parts = append(parts, tmplPart{text: s})
			break
		}
		if i > 0 {
			if strings.ContainsRune(s[:i], '}') {
				return nil, fmt.Errorf("unbalanced \"}\"")
			}
			parts = append(parts, tmplPart{text: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed \"{\"")
		}
		name := s[i+1 : i+j]
		if !validName(name) {
			return nil, fmt.Errorf("invalid variable {%s}", name)
		}
		parts = append(parts, tmplPart{text: name, isVar: true})
		s = s[i+j+1:]
	}
	return parts, nil
}
