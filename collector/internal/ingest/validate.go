package ingest

import (
	"context"
	"math"
	"time"
	"unicode/utf8"

	"github.com/smartmaint/smartmaint/collector/internal/store"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// Rejection reasons, as reported per item and stored in the dead-letter
// table. They are stable, machine-readable strings.
const (
	ReasonInvalidSensor  = "invalid_sensor_id" // empty, too long, bad characters or empty segment
	ReasonUnknownSensor  = "unknown_sensor"    // not registered and auto-registration is off
	ReasonForeignSensor  = "foreign_sensor"    // registered to another edge
	ReasonNonFinite      = "non_finite_value"  // NaN or ±Inf
	ReasonInvalidQuality = "invalid_quality"   // not good, uncertain or bad
	ReasonFuture         = "future_timestamp"  // later than server time + tolerance
	ReasonTooOld         = "too_old"           // older than the retention period
	ReasonInvalidScore   = "invalid_score"     // not a number in [0,1]
	ReasonInvalidText    = "invalid_text"      // model/rule/asset/reason not valid UTF-8, has NUL, or too long
	ReasonInvalidSeq     = "invalid_seq"       // sequence number above 2^63-1
	ReasonOutOfRange     = "out_of_range"      // outside the sensor's physical range, policy reject
	ReasonInvalidEvent   = "invalid_event"     // unknown kind, state or severity, or bad window
	ReasonInvalidGap     = "invalid_gap"       // from after to, or no reason
	ReasonStorageError   = "storage_error"     // the database refused the batch permanently
)

// maxTextLen bounds free-text fields of items (model, rule, asset, reason).
const maxTextLen = 256

func validText(s string, maxLen int) bool {
	if len(s) > maxLen || !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return false
		}
	}
	return true
}

// validate checks every item of b and returns what to store. Unknown
// sensors are registered first when the policy allows.
func (s *Service) validate(ctx context.Context, edgeID string, b *wire.Batch) (*store.BatchWrite, error) {
	now := s.cfg.Now()
	latest := now.Add(s.cfg.FutureTolerance).UnixNano()
	oldest := now.Add(-s.cfg.Retention).UnixNano()
	w := &store.BatchWrite{
		EdgeID:    edgeID,
		BatchID:   b.BatchID,
		FirstSeq:  min(b.FirstSeq, math.MaxInt64),
		LastSeq:   min(b.LastSeq, math.MaxInt64),
		Readings:  b.Readings,
		Nums:      make([]int32, len(b.Readings)),
		NumEvents: len(b.Events),
		NumGaps:   len(b.Gaps),
		OnEvents:  s.cfg.Events,
	}
	metas, invalid, err := s.sensorMetas(ctx, edgeID, b.Readings, now)
	if err != nil {
		return nil, err
	}
	reject := func(item string, idx int, sensor, reason string, raw []byte) {
		w.Rejected = append(w.Rejected, store.DeadLetter{Item: item, Index: idx, Sensor: printable(sensor), Reason: reason, Raw: raw})
		w.Rejections = append(w.Rejections, wire.Rejection{Item: item, Index: idx, Sensor: printable(sensor), Reason: reason})
	}
	for i := range b.Readings {
		r := &b.Readings[i]
		// The out-of-range bit is the collector's to set.
		r.Flags &^= store.FlagOutOfRange
		m, known := metas[r.Sensor]
		reason := ""
		switch {
		case invalid[r.Sensor]:
			reason = ReasonInvalidSensor
		case !known:
			reason = ReasonUnknownSensor
		case m.EdgeID != "" && m.EdgeID != edgeID:
			reason = ReasonForeignSensor
		case math.IsNaN(r.Value) || math.IsInf(r.Value, 0):
			reason = ReasonNonFinite
		case !r.Quality.Valid():
			reason = ReasonInvalidQuality
		case r.Time > latest:
			reason = ReasonFuture
		case r.Time < oldest:
			reason = ReasonTooOld
		case !(r.Score >= 0 && r.Score <= 1):
			reason = ReasonInvalidScore
		case !validText(r.Model, maxTextLen):
			reason = ReasonInvalidText
		case r.Seq > math.MaxInt64:
			reason = ReasonInvalidSeq
		case r.Value < m.Min || r.Value > m.Max:
			if m.Policy == store.RangeReject {
				reason = ReasonOutOfRange
			} else {
				r.Flags |= store.FlagOutOfRange
			}
		}
		if reason != "" {
			reject(wire.ItemReading, i, r.Sensor, reason, rawReading(r))
			continue
		}
		w.Nums[i] = m.Num
	}
	for i := range b.Events {
		e := &b.Events[i]
		if reason := checkEvent(e, latest, oldest); reason != "" {
			reject(wire.ItemEvent, i, e.Sensor, reason, rawEvent(e))
			continue
		}
		w.Events = append(w.Events, *e)
	}
	for i := range b.Gaps {
		g := &b.Gaps[i]
		if reason := checkGap(g); reason != "" {
			reject(wire.ItemGap, i, g.Sensor, reason, rawGap(g))
			continue
		}
		w.Gaps = append(w.Gaps, *g)
	}
	return w, nil
}

func checkEvent(e *wire.Event, latest, oldest int64) string {
	switch {
	case validSensor(e.Sensor) != nil:
		return ReasonInvalidSensor
	case e.Kind != wire.EventAnomaly && e.Kind != wire.EventLimit,
		e.State != wire.EventRaised && e.State != wire.EventCleared,
		e.Severity < wire.SeverityWarning || e.Severity > wire.SeverityCritical,
		e.WindowStart > e.WindowEnd:
		return ReasonInvalidEvent
	case math.IsNaN(e.Value) || math.IsInf(e.Value, 0) || math.IsNaN(e.Threshold) || math.IsInf(e.Threshold, 0):
		return ReasonNonFinite
	case !(e.Score >= 0 && e.Score <= 1):
		return ReasonInvalidScore
	case e.Time > latest:
		return ReasonFuture
	case e.Time < oldest:
		return ReasonTooOld
	case !validText(e.Asset, maxTextLen) || !validText(e.Rule, maxTextLen) || !validText(e.Model, maxTextLen):
		return ReasonInvalidText
	case e.Seq > math.MaxInt64:
		return ReasonInvalidSeq
	}
	return ""
}

func checkGap(g *wire.Gap) string {
	switch {
	case g.Sensor != "" && validSensor(g.Sensor) != nil:
		return ReasonInvalidSensor
	case g.From > g.To, g.Reason == "", g.Count > math.MaxInt64:
		return ReasonInvalidGap
	case !validText(g.Reason, 64):
		return ReasonInvalidText
	case g.Seq > math.MaxInt64:
		return ReasonInvalidSeq
	}
	return ""
}

func validSensor(id string) error {
	_, err := store.ParseSensorID(id)
	return err
}

// sensorMetas resolves every distinct sensor of the readings: from the
// cache, then the registry, then by auto-registration when the policy
// allows. Ids that do not parse are in invalid; ids neither known nor
// registered are in neither map.
func (s *Service) sensorMetas(ctx context.Context, edgeID string, rs []wire.Reading, now time.Time) (known map[string]store.SensorMeta, invalid map[string]bool, err error) {
	out := make(map[string]store.SensorMeta)
	var missing []string
	invalid = make(map[string]bool)
	s.cacheMu.Lock()
	for i := range rs {
		id := rs[i].Sensor
		if _, ok := out[id]; ok || invalid[id] {
			continue
		}
		if c, ok := s.cache[id]; ok && now.Before(c.expires) {
			out[id] = c.meta
			continue
		}
		if validSensor(id) != nil {
			invalid[id] = true
			continue
		}
		out[id] = store.SensorMeta{} // placeholder, to dedupe
		missing = append(missing, id)
	}
	s.cacheMu.Unlock()
	for _, id := range missing {
		delete(out, id)
	}
	if len(missing) > 0 {
		found, err := s.db.LookupSensors(ctx, missing)
		if err != nil {
			return nil, nil, err
		}
		var unknown []string
		for _, id := range missing {
			if m, ok := found[id]; ok {
				out[id] = m
			} else {
				unknown = append(unknown, id)
			}
		}
		if len(unknown) > 0 && s.cfg.AutoRegister == AutoRegisterEdge {
			reg, err := s.db.RegisterSensors(ctx, edgeID, unknown)
			if err != nil {
				return nil, nil, err
			}
			for id, m := range reg {
				out[id] = m
			}
			s.log.Info("sensors auto-registered", "edge", edgeID, "count", len(unknown))
		}
		s.cacheMu.Lock()
		if len(s.cache) > maxSensorCache {
			clear(s.cache)
		}
		exp := now.Add(s.cfg.SensorCacheTTL)
		for _, id := range missing {
			if m, ok := out[id]; ok {
				s.cache[id] = cachedSensor{meta: m, expires: exp}
			}
		}
		s.cacheMu.Unlock()
	}
	return out, invalid, nil
}
