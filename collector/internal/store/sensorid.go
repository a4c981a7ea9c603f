package store

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxSensorIDLen bounds a sensor id in bytes.
const MaxSensorIDLen = 256

// SensorPath is a sensor id split into its parts.
type SensorPath struct {
	Site, Line, Asset, Name string
}

// ParseSensorID splits a sensor id "site/line/asset/name" into its parts.
// Shorter ids are accepted: "name", "asset/name", "site/asset/name"; longer
// ones put the extra middle segments into Line ("s/a/b/asset/name" has
// Line "a/b"). An id must be valid UTF-8 of 1–256 bytes without control
// characters, and no segment may be empty or have surrounding spaces.
func ParseSensorID(id string) (SensorPath, error) {
	if id == "" {
		return SensorPath{}, errors.New("empty sensor id")
	}
	if len(id) > MaxSensorIDLen {
		return SensorPath{}, errors.New("sensor id longer than 256 bytes")
	}
	if !utf8.ValidString(id) {
		return SensorPath{}, errors.New("sensor id is not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return SensorPath{}, errors.New("sensor id contains a control character")
		}
	}
	segs := strings.Split(id, "/")
	for _, s := range segs {
		if s == "" {
			return SensorPath{}, errors.New("sensor id has an empty segment")
		}
		if strings.TrimSpace(s) != s {
			return SensorPath{}, errors.New("sensor id segment has leading or trailing spaces")
		}
	}
	n := len(segs)
	switch n {
	case 1:
		return SensorPath{Name: segs[0]}, nil
	case 2:
		return SensorPath{Asset: segs[0], Name: segs[1]}, nil
	case 3:
		return SensorPath{Site: segs[0], Asset: segs[1], Name: segs[2]}, nil
	}
	return SensorPath{Site: segs[0], Line: strings.Join(segs[1:n-2], "/"), Asset: segs[n-2], Name: segs[n-1]}, nil
}
