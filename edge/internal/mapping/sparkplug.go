package mapping

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Sparkplug B (Eclipse Sparkplug 3.0) payloads are protobuf messages:
//
//	Payload { uint64 timestamp = 1; repeated Metric metrics = 2; uint64 seq = 3; ... }
//	Metric  { string name = 1; uint64 alias = 2; uint64 timestamp = 3; uint32 datatype = 4;
//	          bool is_null = 7; uint32 int_value = 10; uint64 long_value = 11;
//	          float float_value = 12; double double_value = 13; bool boolean_value = 14; ... }
//
// Topics are spBv1.0/<group>/<type>/<edge node>[/<device>]. NBIRTH, DBIRTH,
// NDATA and DDATA carry metrics and become readings (one per numeric or
// boolean metric, named by the metric name, resolved from its alias when the
// name is omitted); other types (DEATH, CMD, STATE) are ignored. Metric and
// payload timestamps are milliseconds since the epoch.

// Sparkplug data types that carry a number.
const (
	spInt8    = 1
	spInt16   = 2
	spInt32   = 3
	spInt64   = 4
	spUInt8   = 5
	spUInt16  = 6
	spUInt32  = 7
	spUInt64  = 8
	spFloat   = 9
	spDouble  = 10
	spBoolean = 11
)

// sparkplugState holds metric aliases declared by BIRTH messages, per
// edge node or device. Safe for concurrent use.
type sparkplugState struct {
	mu      sync.Mutex
	aliases map[string]map[uint64]string
}

func newSparkplugState() *sparkplugState {
	return &sparkplugState{aliases: map[string]map[uint64]string{}}
}

// maxSparkplugDevices bounds the alias table.
const maxSparkplugDevices = 100000

type spMetric struct {
	name     []byte
	alias    uint64
	hasAlias bool
	ts       uint64
	dtype    uint64
	isNull   bool
	ival     uint64
	fval     float64
	hasVal   bool
}

// parseSpMetric decodes one Metric message.
func parseSpMetric(b []byte) (spMetric, error) {
	var m spMetric
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return m, protowire.ParseError(n)
			}
			m.name, b = v, b[n:]
			continue
		case typ == protowire.VarintType && (num == 2 || num == 3 || num == 4 || num == 7 || num == 10 || num == 11 || num == 14):
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return m, protowire.ParseError(n)
			}
			b = b[n:]
			switch num {
			case 2:
				m.alias, m.hasAlias = v, true
			case 3:
				m.ts = v
			case 4:
				m.dtype = v
			case 7:
				m.isNull = v != 0
			default:
				m.ival, m.hasVal = v, true
			}
			continue
		case num == 12 && typ == protowire.Fixed32Type:
			v, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return m, protowire.ParseError(n)
			}
			m.fval, m.hasVal, b = float64(math.Float32frombits(v)), true, b[n:]
			continue
		case num == 13 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return m, protowire.ParseError(n)
			}
			m.fval, m.hasVal, b = math.Float64frombits(v), true, b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return m, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return m, nil
}

// value returns the metric's number; ok is false for non-numeric types
// (string, bytes, dataset, template, DateTime) and null metrics.
func (m *spMetric) value() (v float64, ok bool) {
	if m.isNull || !m.hasVal {
		return 0, false
	}
	switch m.dtype {
	case spInt8:
		return float64(int8(uint8(m.ival))), true
	case spInt16:
		return float64(int16(uint16(m.ival))), true
	case spInt32:
		return float64(int32(uint32(m.ival))), true
	case spInt64:
		return float64(int64(m.ival)), true
	case spUInt8, spUInt16, spUInt32, spUInt64:
		return float64(m.ival), true
	case spFloat, spDouble:
		return m.fval, true
	case spBoolean:
		if m.ival != 0 {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// sparkplugTopic splits spBv1.0/group/type/node[/device].
func sparkplugTopic(topic string) (msgType, key string, ok bool) {
	parts := strings.SplitN(topic, "/", 6)
	if len(parts) < 4 || len(parts) > 5 || parts[0] != "spBv1.0" {
		return "", "", false
	}
	key = parts[1] + "/" + parts[3]
	if len(parts) == 5 {
		key += "/" + parts[4]
	}
	return parts[2], key, true
}

func (m *Mapper) mapSparkplug(dst []wire.Reading, r *route, topic string, payload []byte, recv time.Time) ([]wire.Reading, int) {
	msgType, key, ok := sparkplugTopic(topic)
	if !ok {
		m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "not a Sparkplug B topic (spBv1.0/group/type/node[/device])"), payload)
		return dst, 1
	}
	birth := false
	switch msgType {
	case "NBIRTH", "DBIRTH":
		birth = true
	case "NDATA", "DDATA":
	default:
		return dst, 0 // DEATH, CMD, STATE: nothing to map
	}
	// First pass: validate the framing and find the payload timestamp,
	// which may follow the metrics.
	var payloadTS uint64
	nMetrics := 0
	for b := payload; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "protobuf: %v", protowire.ParseError(n)), payload)
			return dst, 1
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "protobuf: %v", protowire.ParseError(n)), payload)
				return dst, 1
			}
			payloadTS, b = v, b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "protobuf: %v", protowire.ParseError(n)), payload)
			return dst, 1
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			nMetrics++
		}
	}
	if nMetrics > maxItems {
		m.rejectErr(r, recv, topic, reject(ReasonTooLarge, "more than %d metrics", maxItems), payload)
		return dst, 1
	}
	var births map[uint64]string
	if birth {
		births = map[uint64]string{}
	}
	bad, i := 0, -1
	// Second pass: the metrics (framing is known to be valid).
	for b := payload; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num != 2 || typ != protowire.BytesType {
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
			continue
		}
		mb, n := protowire.ConsumeBytes(b)
		b = b[n:]
		i++
		mt, err := parseSpMetric(mb)
		if err != nil {
			m.rejectErr(r, recv, topic, reject(ReasonBadPayload, "metric %d: protobuf: %v", i, err), payload)
			bad++
			continue
		}
		name := mt.name
		if birth && len(name) > 0 && mt.hasAlias {
			births[mt.alias] = string(name)
		}
		if len(name) == 0 && mt.hasAlias {
			var s string
			if birth {
				s = births[mt.alias]
			} else {
				s = m.sp.lookup(key, mt.alias)
			}
			if s == "" {
				m.rejectErr(r, recv, topic, reject(ReasonUnknownAlias, "metric %d: alias %d was not declared in a BIRTH message", i, mt.alias), payload)
				bad++
				continue
			}
			name = unsafeBytes(s)
		}
		if len(name) == 0 {
			m.rejectErr(r, recv, topic, reject(ReasonNoSensor, "metric %d has neither name nor alias", i), payload)
			bad++
			continue
		}
		v, ok := mt.value()
		if !ok {
			continue // not a number: strings, datasets, nulls are not readings
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			m.rejectErr(r, recv, topic, fmt.Errorf("metric %q: %w", name, errNonFinite), payload)
			bad++
			continue
		}
		e := m.itemEntry(r, name)
		if e.profile == nil {
			m.noProfile(r, recv, topic, e, payload)
			bad++
			continue
		}
		rd := wire.Reading{Sensor: e.id, Value: v}
		ts := mt.ts
		if ts == 0 {
			ts = payloadTS
		}
		if ts > 0 && ts < math.MaxInt64/1_000_000 {
			rd.Time = int64(ts) * 1e6
		} else {
			rd.Time = recv.UnixNano()
			rd.Flags |= wire.FlagNoTimestamp
		}
		e.count.Add(1)
		e.last.Store(rd.Time)
		dst = append(dst, rd)
	}
	if birth {
		m.sp.set(key, births)
	}
	return dst, bad
}

// unsafeBytes views s as bytes for a map lookup; the bytes are never
// modified or retained (itemEntry copies the name when it stores it).
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (s *sparkplugState) lookup(key string, alias uint64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aliases[key][alias]
}

func (s *sparkplugState) set(key string, births map[uint64]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.aliases[key]; !ok && len(s.aliases) >= maxSparkplugDevices {
		return
	}
	s.aliases[key] = births
}
