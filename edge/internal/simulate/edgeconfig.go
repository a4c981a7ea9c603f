package simulate

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// edgeFile is the part of an sm-edge site config (edge.yaml) the
// simulator reads to publish what that config maps: the broker URL and
// the first JSON subscription whose pattern names {asset} and {sensor}.
// Other keys are ignored: the file belongs to `sm-edge run`, which
// validates it (`sm-edge config validate`).
type edgeFile struct {
	Broker struct {
		URL string `yaml:"url"`
	} `yaml:"broker"`
	Subscriptions []struct {
		Topic  string `yaml:"topic"`
		Format string `yaml:"format"`
		JSON   struct {
			Items     string `yaml:"items"`
			Value     string `yaml:"value"`
			Timestamp string `yaml:"timestamp"`
			Quality   string `yaml:"quality"`
		} `yaml:"json"`
	} `yaml:"subscriptions"`
}

// isEdgeConfig reports whether the YAML document looks like an sm-edge
// site config rather than a simulator config.
func isEdgeConfig(data []byte) bool {
	var top map[string]yaml.Node
	if yaml.Unmarshal(data, &top) != nil {
		return false
	}
	_, subs := top["subscriptions"]
	_, id := top["edge_id"]
	return subs || id
}

// applyEdgeConfig takes the broker, topic template and JSON field names
// from an sm-edge site config.
func applyEdgeConfig(path string, data []byte, cfg *Config) error {
	var f edgeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if f.Broker.URL != "" {
		cfg.Broker = f.Broker.URL
	}
	placeholder := regexp.MustCompile(`\{([a-z_]+)#?\}`)
	var reasons []string
	for i, s := range f.Subscriptions {
		where := fmt.Sprintf("subscriptions[%d] %q", i, s.Topic)
		switch {
		case s.Format != "" && s.Format != "json":
			reasons = append(reasons, where+": format "+s.Format)
			continue
		case s.JSON.Items != "":
			reasons = append(reasons, where+": an array of readings per message")
			continue
		case !strings.Contains(s.Topic, "{asset}") || !strings.Contains(s.Topic, "{sensor}"):
			reasons = append(reasons, where+": no {asset} and {sensor} levels")
			continue
		case strings.ContainsAny(s.Topic, "+#") || strings.Contains(s.Topic, "#}"):
			reasons = append(reasons, where+": wildcard levels")
			continue
		}
		bad := ""
		for _, m := range placeholder.FindAllStringSubmatch(s.Topic, -1) {
			switch m[1] {
			case "site", "line", "asset", "sensor":
			default:
				bad = m[0]
			}
		}
		if bad != "" {
			reasons = append(reasons, where+": cannot fill "+bad)
			continue
		}
		fields := Fields{Value: s.JSON.Value, Timestamp: s.JSON.Timestamp, Quality: s.JSON.Quality}
		// sm-edge's defaults for absent paths.
		if fields.Value == "" {
			fields.Value = "value"
		}
		if fields.Timestamp == "" {
			fields.Timestamp = "timestamp"
		}
		if fields.Quality == "" {
			fields.Quality = "quality"
		}
		for _, k := range []string{fields.Value, fields.Timestamp, fields.Quality} {
			if strings.Contains(k, ".") {
				bad = k
			}
		}
		if bad != "" {
			reasons = append(reasons, where+": nested JSON path "+bad)
			continue
		}
		cfg.Topic = s.Topic
		cfg.Fields = fields
		return nil
	}
	return fmt.Errorf("%s: no subscription the simulator can publish to (it needs format json, one reading per message, a topic with {asset} and {sensor}, and top-level JSON fields): %s",
		path, strings.Join(reasons, "; "))
}
