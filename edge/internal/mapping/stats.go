package mapping

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounds of the in-memory statistics, so that a flood of distinct bad
// topics cannot grow memory without limit. Beyond them, counts go to the
// OtherTopics bucket (the Prometheus counters still count everything).
const (
	maxTopicStats      = 10000
	defaultDeadLetters = 1000
	maxDeadLetterBytes = 4096
	OtherTopics        = "(other topics)"
	unmappedSubLabel   = "(none)"
)

// DeadLetter is a rejected message or item kept for inspection.
type DeadLetter struct {
	Time         time.Time `json:"time"`
	Topic        string    `json:"topic"`
	Subscription string    `json:"subscription,omitempty"`
	Reason       string    `json:"reason"`
	Error        string    `json:"error"`
	// Payload is the raw payload, cut to 4 KiB (Truncated then says so).
	Payload   []byte `json:"payload"`
	Truncated bool   `json:"truncated,omitempty"`
}

// TopicReasonCount counts rejections of one topic for one reason.
type TopicReasonCount struct {
	Topic  string    `json:"topic"`
	Reason string    `json:"reason"`
	Count  uint64    `json:"count"`
	Last   time.Time `json:"last"`
}

type trKey struct{ topic, reason string }

type trStat struct {
	count uint64
	last  time.Time
}

// stats counts what the mapper did. Safe for concurrent use.
type stats struct {
	messages atomic.Uint64
	readings atomic.Uint64
	rejected atomic.Uint64
	// Messages by result; exported as counter functions so the hot path
	// costs one uncontended atomic add each, not a float CAS loop.
	msgOK, msgPartial, msgRejected atomic.Uint64

	log *slog.Logger // may be nil

	mu      sync.Mutex
	byTR    map[trKey]*trStat
	ring    []DeadLetter
	next    int
	wrapped bool

	mErrors *prometheus.CounterVec
}

func newStats(reg prometheus.Registerer, ringSize int, log *slog.Logger) *stats {
	if ringSize <= 0 {
		ringSize = defaultDeadLetters
	}
	s := &stats{
		log:  log,
		byTR: map[trKey]*trStat{},
		ring: make([]DeadLetter, ringSize),
		// Labelled by subscription pattern rather than topic: topics are
		// unbounded (and attacker-controlled); per-topic counts are in
		// /status and `sm-edge status`.
		mErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_edge_decode_errors_total",
			Help: "Rejected messages or items by subscription pattern and reason (unknown_topic, no_profile, bad_payload, non_finite, ...).",
		}, []string{"subscription", "reason"}),
	}
	if reg != nil {
		const msgHelp = "MQTT messages handled by the mapper, by result: ok (all readings mapped), partial (some items rejected), rejected (nothing mapped)."
		msgFunc := func(result string, v *atomic.Uint64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "smartmaint_edge_messages_total", Help: msgHelp, ConstLabels: prometheus.Labels{"result": result},
			}, func() float64 { return float64(v.Load()) })
		}
		reg.MustRegister(
			msgFunc("ok", &s.msgOK), msgFunc("partial", &s.msgPartial), msgFunc("rejected", &s.msgRejected),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "smartmaint_edge_readings_mapped_total",
				Help: "Readings decoded and mapped to a sensor with a profile.",
			}, func() float64 { return float64(s.readings.Load()) }),
			s.mErrors,
		)
	}
	return s
}

// reject records one rejected message or item.
func (s *stats) reject(now time.Time, topic, sub, reason, detail string, payload []byte) {
	s.rejected.Add(1)
	if sub == "" {
		sub = unmappedSubLabel
	}
	s.mErrors.WithLabelValues(sub, reason).Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := trKey{topic, reason}
	st := s.byTR[k]
	if st == nil {
		if len(s.byTR) >= maxTopicStats {
			k.topic = OtherTopics
			st = s.byTR[k]
		}
		if st == nil {
			st = &trStat{}
			s.byTR[k] = st
			if s.log != nil {
				// Once per topic and reason, so commissioning shows what is
				// not mapped without flooding the log.
				s.log.Warn("rejected a message; further ones of this topic and reason are only counted",
					"topic", topic, "reason", reason, "err", detail)
			}
		}
	}
	st.count++
	st.last = now
	dl := &s.ring[s.next]
	n := min(len(payload), maxDeadLetterBytes)
	*dl = DeadLetter{
		Time: now, Topic: topic, Subscription: sub, Reason: reason, Error: detail,
		Payload: append(dl.Payload[:0], payload[:n]...), Truncated: n < len(payload),
	}
	if sub == unmappedSubLabel {
		dl.Subscription = ""
	}
	s.next++
	if s.next == len(s.ring) {
		s.next, s.wrapped = 0, true
	}
}

// errorsByTopic returns the rejection counts sorted by count, descending.
func (s *stats) errorsByTopic() []TopicReasonCount {
	s.mu.Lock()
	out := make([]TopicReasonCount, 0, len(s.byTR))
	for k, v := range s.byTR {
		out = append(out, TopicReasonCount{Topic: k.topic, Reason: k.reason, Count: v.count, Last: v.last})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}

// deadLetters returns up to n most recent dead letters, newest first.
func (s *stats) deadLetters(n int) []DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	size := s.next
	if s.wrapped {
		size = len(s.ring)
	}
	if n <= 0 || n > size {
		n = size
	}
	out := make([]DeadLetter, 0, n)
	for i := 0; i < n; i++ {
		idx := (s.next - 1 - i + len(s.ring)) % len(s.ring)
		d := s.ring[idx]
		d.Payload = append([]byte(nil), d.Payload...)
		out = append(out, d)
	}
	return out
}
