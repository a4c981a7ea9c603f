package mapping

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Reasons why a message or an item of it was rejected. They label the
// decode-error metric and the dead-letter entries, so they are stable.
const (
	ReasonUnknownTopic = "unknown_topic"  // no subscription pattern matches the topic
	ReasonNoProfile    = "no_profile"     // no profile rule, override or default for the sensor
	ReasonEmpty        = "empty_payload"  // zero-length payload
	ReasonBadPayload   = "bad_payload"    // not parseable in the subscription's format
	ReasonNoValue      = "missing_value"  // the value field is absent or null
	ReasonBadValue     = "bad_value"      // the value is not a number
	ReasonNonFinite    = "non_finite"     // NaN or ±Inf (or out of float64 range)
	ReasonBadTimestamp = "bad_timestamp"  // the timestamp cannot be parsed or is out of range
	ReasonBadQuality   = "bad_quality"    // the quality is not a known code
	ReasonNoSensor     = "missing_sensor" // the per-item sensor name is absent or empty
	ReasonUnknownAlias = "unknown_alias"  // Sparkplug metric alias without a prior BIRTH
	ReasonTooLarge     = "too_large"      // a payload or array beyond the configured bounds
)

// Format is a payload format.
type Format string

// Payload formats.
const (
	FormatJSON      Format = "json"
	FormatPlain     Format = "plain"
	FormatSparkplug Format = "sparkplug"
)

// TimeUnit says how to read a numeric epoch timestamp.
type TimeUnit string

// Time units. TimeAuto picks by magnitude: below 1e11 seconds, below 1e14
// milliseconds, below 1e17 microseconds, otherwise nanoseconds. That is
// unambiguous for any date between 1973 and 5138.
const (
	TimeAuto TimeUnit = "auto"
	TimeS    TimeUnit = "s"
	TimeMS   TimeUnit = "ms"
	TimeUS   TimeUnit = "us"
	TimeNS   TimeUnit = "ns"
)

// decodeError is an item-level rejection with its reason.
type decodeError struct {
	reason string
	detail string
}

// Error returns the detail; the reason is reported separately.
func (e *decodeError) Error() string { return e.detail }

func reject(reason, format string, args ...any) error {
	return &decodeError{reason: reason, detail: fmt.Sprintf(format, args...)}
}

// reasonOf returns the reason of a decode error (bad_payload otherwise).
func reasonOf(err error) string {
	var de *decodeError
	if errors.As(err, &de) {
		return de.reason
	}
	return ReasonBadPayload
}

// Pre-built errors for the hot path, so that rejecting costs no allocation.
var (
	errNonFinite = &decodeError{reason: ReasonNonFinite, detail: "value is NaN or infinite"}
	errEmpty     = &decodeError{reason: ReasonEmpty, detail: "payload is empty"}
	errNoValue   = &decodeError{reason: ReasonNoValue, detail: "value field is absent or null"}
)

// parsePlain parses a payload that is just a number (surrounding
// whitespace allowed).
func parsePlain(p []byte) (float64, error) {
	p = bytes.TrimSpace(p)
	if len(p) == 0 {
		return 0, errEmpty
	}
	if len(p) > 64 {
		return 0, reject(ReasonBadPayload, "payload of %d bytes is not a plain number", len(p))
	}
	v, err := strconv.ParseFloat(string(p), 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, errNonFinite
		}
		return 0, reject(ReasonBadPayload, "not a number: %q", p)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, errNonFinite
	}
	return v, nil
}

// parseJSONValue parses a value field: a number, a numeric string or a
// boolean (1/0).
func parseJSONValue(raw []byte) (float64, error) {
	if len(raw) == 0 {
		return 0, errNoValue
	}
	switch raw[0] {
	case 'n':
		return 0, errNoValue
	case 't':
		return 1, nil
	case 'f':
		return 0, nil
	case '"':
		if len(raw) < 2 {
			return 0, reject(ReasonBadValue, "bad string")
		}
		raw = raw[1 : len(raw)-1]
	case '{', '[':
		return 0, reject(ReasonBadValue, "value is an object or array, not a number")
	}
	if len(raw) > 64 {
		return 0, reject(ReasonBadValue, "value of %d bytes is not a number", len(raw))
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, errNonFinite
		}
		return 0, reject(ReasonBadValue, "not a number: %q", raw)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, errNonFinite
	}
	return v, nil
}

// Bounds of accepted timestamps: 1970-01-01 < t < 2262 (int64 ns).
const maxUnixNS = math.MaxInt64

// parseTimestamp parses a JSON timestamp field into Unix ns: an RFC 3339
// string, or an epoch number (or numeric string) in unit.
func parseTimestamp(raw []byte, unit TimeUnit) (int64, error) {
	if len(raw) == 0 {
		return 0, reject(ReasonBadTimestamp, "empty timestamp")
	}
	if raw[0] == '"' {
		if len(raw) < 2 {
			return 0, reject(ReasonBadTimestamp, "bad string")
		}
		s := raw[1 : len(raw)-1]
		if len(s) > 0 && (s[0] >= '0' && s[0] <= '9') && !bytes.ContainsAny(s, "T:-") {
			return parseEpoch(s, unit)
		}
		if len(s) > 64 {
			return 0, reject(ReasonBadTimestamp, "timestamp string too long")
		}
		t, err := time.Parse(time.RFC3339Nano, string(s))
		if err != nil {
			// Accept a space instead of "T", common in gateways.
			t, err = time.Parse("2006-01-02 15:04:05.999999999Z07:00", string(s))
		}
		if err != nil {
			return 0, reject(ReasonBadTimestamp, "not RFC 3339: %q", s)
		}
		if t.Year() < 1970 || t.Year() > 2261 {
			return 0, reject(ReasonBadTimestamp, "timestamp %q out of range", s)
		}
		return t.UnixNano(), nil
	}
	return parseEpoch(raw, unit)
}

func parseEpoch(s []byte, unit TimeUnit) (int64, error) {
	if len(s) > 40 {
		return 0, reject(ReasonBadTimestamp, "timestamp too long")
	}
	var f float64
	var isInt bool
	var n int64
	if i, err := strconv.ParseInt(string(s), 10, 64); err == nil {
		n, isInt, f = i, true, float64(i)
	} else {
		v, err := strconv.ParseFloat(string(s), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, reject(ReasonBadTimestamp, "not a timestamp: %q", s)
		}
		f = v
	}
	if f <= 0 {
		return 0, reject(ReasonBadTimestamp, "timestamp %s is not after 1970", s)
	}
	if unit == TimeAuto || unit == "" {
		switch {
		case f < 1e11:
			unit = TimeS
		case f < 1e14:
			unit = TimeMS
		case f < 1e17:
			unit = TimeUS
		default:
			unit = TimeNS
		}
	}
	var mul int64
	switch unit {
	case TimeS:
		mul = 1e9
	case TimeMS:
		mul = 1e6
	case TimeUS:
		mul = 1e3
	case TimeNS:
		mul = 1
	default:
		return 0, reject(ReasonBadTimestamp, "unknown time unit %q", unit)
	}
	if isInt {
		if n > maxUnixNS/mul {
			return 0, reject(ReasonBadTimestamp, "timestamp %s out of range for unit %s", s, unit)
		}
		return n * mul, nil
	}
	ns := f * float64(mul)
	if ns >= float64(maxUnixNS) {
		return 0, reject(ReasonBadTimestamp, "timestamp %s out of range for unit %s", s, unit)
	}
	return int64(math.Round(ns)), nil
}

// parseQuality reads a quality field: "good"/"ok", "uncertain", "bad"
// (any case), 0/1/2 (wire codes), or true/false.
func parseQuality(raw []byte) (wire.Quality, error) {
	if len(raw) == 0 {
		return wire.QualityGood, nil
	}
	switch raw[0] {
	case 'n':
		return wire.QualityGood, nil
	case 't':
		return wire.QualityGood, nil
	case 'f':
		return wire.QualityBad, nil
	case '"':
		s := raw[1 : len(raw)-1]
		switch {
		case bytes.EqualFold(s, []byte("good")), bytes.EqualFold(s, []byte("ok")):
			return wire.QualityGood, nil
		case bytes.EqualFold(s, []byte("uncertain")):
			return wire.QualityUncertain, nil
		case bytes.EqualFold(s, []byte("bad")):
			return wire.QualityBad, nil
		}
		return 0, reject(ReasonBadQuality, "unknown quality %q (want good, uncertain, bad)", s)
	}
	switch string(raw) {
	case "0":
		return wire.QualityGood, nil
	case "1":
		return wire.QualityUncertain, nil
	case "2":
		return wire.QualityBad, nil
	}
	return 0, reject(ReasonBadQuality, "unknown quality code %s (want 0 good, 1 uncertain, 2 bad)", raw)
}

// splitPath splits a dotted JSON path; "" means "not configured".
func splitPath(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, ".")
}
