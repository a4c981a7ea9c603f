package mapping

import (
	"sort"
	"time"
)

// SensorStat is what the mapper has seen of one sensor.
type SensorStat struct {
	ID string `json:"id"`
	// Profile is "" when the sensor has none (then it is unmapped).
	Profile  string    `json:"profile,omitempty"`
	Readings uint64    `json:"readings"`
	Last     time.Time `json:"last,omitzero"`
}

// Snapshot is a copy of the mapper's statistics for /status.
type Snapshot struct {
	Messages uint64 `json:"messages"`
	Readings uint64 `json:"readings"`
	Rejected uint64 `json:"rejected"`
	// Sensors are the sensors with a profile that produced readings.
	Sensors []SensorStat `json:"sensors"`
	// Unmapped counts messages whose topic matched no pattern or whose
	// sensor has no profile, per topic.
	Unmapped []TopicReasonCount `json:"unmapped"`
	// Errors counts the other rejections per topic and reason.
	Errors []TopicReasonCount `json:"errors"`
	// DeadLetters are the most recent rejected messages, newest first.
	DeadLetters []DeadLetter `json:"dead_letters"`
}

// Readings returns how many readings the mapper has emitted.
func (m *Mapper) Readings() uint64 { return m.stats.readings.Load() }

// Snapshot returns current statistics with up to deadLetters recent
// dead-letter entries (0: all kept).
func (m *Mapper) Snapshot(deadLetters int) Snapshot {
	s := Snapshot{
		Messages:    m.stats.messages.Load(),
		Readings:    m.stats.readings.Load(),
		Rejected:    m.stats.rejected.Load(),
		DeadLetters: m.stats.deadLetters(deadLetters),
		Sensors:     []SensorStat{},
		Unmapped:    []TopicReasonCount{},
		Errors:      []TopicReasonCount{},
	}
	m.mu.RLock()
	for _, e := range m.sensors {
		if e.profile == nil {
			continue
		}
		n := e.count.Load()
		if n == 0 {
			continue
		}
		st := SensorStat{ID: e.id, Profile: e.profile.Name, Readings: n}
		if l := e.last.Load(); l != 0 {
			st.Last = time.Unix(0, l).UTC()
		}
		s.Sensors = append(s.Sensors, st)
	}
	m.mu.RUnlock()
	sort.Slice(s.Sensors, func(i, j int) bool { return s.Sensors[i].ID < s.Sensors[j].ID })
	for _, c := range m.stats.errorsByTopic() {
		if c.Reason == ReasonUnknownTopic || c.Reason == ReasonNoProfile {
			s.Unmapped = append(s.Unmapped, c)
		} else {
			s.Errors = append(s.Errors, c)
		}
	}
	return s
}
