package simulate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// File is the simulator's YAML config (--config). Every field is
// optional; command-line flags override it.
//
//	version: 1
//	broker: tcp://127.0.0.1:1883
//	site: riverside
//	line: line1
//	topic: plant/{site}/{line}/{asset}/{sensor}
//	assets: 10
//	rate: 1            # samples per second per sensor
//	qos: 1
//	faults: random     # random, schedule or none
//	fault_every: 15m   # random: mean time between faults of one asset
//	schedule:
//	  - pump3:bearing_wear@2m+5m
//	  - pump1/flow:step@30s+2m*6
type File struct {
	Version    int           `yaml:"version"`
	Broker     string        `yaml:"broker"`
	Site       string        `yaml:"site"`
	Line       string        `yaml:"line"`
	Topic      string        `yaml:"topic"`
	Assets     int           `yaml:"assets"`
	Rate       float64       `yaml:"rate"`
	QoS        *int          `yaml:"qos"`
	Duration   time.Duration `yaml:"duration"`
	Seed       *uint64       `yaml:"seed"`
	Faults     string        `yaml:"faults"`
	FaultEvery time.Duration `yaml:"fault_every"`
	Schedule   []yaml.Node   `yaml:"schedule"`
}

// LoadFile reads a simulator config strictly (unknown keys are errors)
// and applies it to cfg. Errors name the file and line.
//
// Given an sm-edge site config instead (a file with subscriptions or
// edge_id), it takes the broker URL, the topic pattern and the JSON field
// names of the first subscription it can publish to, so the simulator
// publishes exactly what that config maps.
func LoadFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read simulator config: %w", err)
	}
	if isEdgeConfig(data) {
		return applyEdgeConfig(path, data, cfg)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	if f.Version != 1 {
		errs = append(errs, fmt.Errorf("%s: version: %d, want 1", path, f.Version))
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Broker, f.Broker)
	set(&cfg.Site, f.Site)
	set(&cfg.Line, f.Line)
	set(&cfg.Topic, f.Topic)
	if f.Assets != 0 {
		cfg.Assets = f.Assets
	}
	if f.Rate != 0 {
		cfg.Rate = f.Rate
	}
	if f.QoS != nil {
		if *f.QoS < 0 || *f.QoS > 2 {
			errs = append(errs, fmt.Errorf("%s: qos: %d, want 0, 1 or 2", path, *f.QoS))
		} else {
			cfg.QoS = byte(*f.QoS)
		}
	}
	if f.Duration != 0 {
		cfg.Duration = f.Duration
	}
	if f.Seed != nil {
		cfg.Seed = *f.Seed
	}
	if f.Faults != "" {
		cfg.Faults = FaultMode(f.Faults)
	}
	if f.FaultEvery != 0 {
		cfg.FaultEvery = f.FaultEvery
	}
	for _, n := range f.Schedule {
		var s string
		if err := n.Decode(&s); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: schedule: want a string like pump3:bearing@2m+5m", path, n.Line))
			continue
		}
		fs, err := ParseFault(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: schedule: %w", path, n.Line, err))
			continue
		}
		cfg.Schedule = append(cfg.Schedule, fs)
	}
	return errors.Join(errs...)
}
