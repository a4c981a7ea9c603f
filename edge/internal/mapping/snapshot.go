package mapping

import (
	"cmp"
	"container/heap"
	"slices"
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
	// SensorsSeen is how many sensors with a profile produced readings.
	SensorsSeen int `json:"sensors_seen"`
	// Sensors are those sensors: all of them by id, or, when Snapshot was
	// asked for at most N, the N silent the longest (oldest last reading
	// first) — what a technician looks for.
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
// dead-letter entries (0: all kept) and up to maxSensors sensors, silent
// the longest first (0: all, by id).
//
// The mapper's lock is held only to copy the entry pointers; the counts
// are atomics, read and selected outside it (a bounded heap: O(n log
// maxSensors), not a sort of tens of thousands of sensors).
func (m *Mapper) Snapshot(deadLetters, maxSensors int) Snapshot {
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
	entries := make([]*sensorEntry, 0, len(m.sensors))
	for _, e := range m.sensors {
		if e.profile != nil {
			entries = append(entries, e)
		}
	}
	m.mu.RUnlock()
	var oldest sensorHeap
	for _, e := range entries {
		n := e.count.Load()
		if n == 0 {
			continue
		}
		s.SensorsSeen++
		st := SensorStat{ID: e.id, Profile: e.profile.Name, Readings: n}
		if l := e.last.Load(); l != 0 {
			st.Last = time.Unix(0, l).UTC()
		}
		switch {
		case maxSensors <= 0:
			s.Sensors = append(s.Sensors, st)
		case len(oldest) < maxSensors:
			heap.Push(&oldest, st)
		case silentLonger(st, oldest[0]):
			oldest[0] = st
			heap.Fix(&oldest, 0)
		}
	}
	if maxSensors <= 0 {
		slices.SortFunc(s.Sensors, func(a, b SensorStat) int { return cmp.Compare(a.ID, b.ID) })
	} else {
		s.Sensors = append(s.Sensors, oldest...)
		slices.SortFunc(s.Sensors, func(a, b SensorStat) int {
			if silentLonger(a, b) {
				return -1
			}
			if silentLonger(b, a) {
				return 1
			}
			return 0
		})
	}
	for _, c := range m.stats.errorsByTopic() {
		if c.Reason == ReasonUnknownTopic || c.Reason == ReasonNoProfile {
			s.Unmapped = append(s.Unmapped, c)
		} else {
			s.Errors = append(s.Errors, c)
		}
	}
	return s
}

// silentLonger orders sensors by last reading, oldest first, then by id.
func silentLonger(a, b SensorStat) bool {
	if c := a.Last.Compare(b.Last); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}

// sensorHeap is a max-heap by silentLonger: its root is the sensor heard
// from most recently among those kept, the one to replace first.
type sensorHeap []SensorStat

func (h sensorHeap) Len() int           { return len(h) }
func (h sensorHeap) Less(i, j int) bool { return silentLonger(h[j], h[i]) }
func (h sensorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *sensorHeap) Push(x any)        { *h = append(*h, x.(SensorStat)) }
func (h *sensorHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
