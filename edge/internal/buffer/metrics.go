package buffer

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg           prometheus.Registerer
	cs            []prometheus.Collector
	appends       prometheus.Counter
	commits       prometheus.Counter
	commitErrors  prometheus.Counter
	commitLatency prometheus.Histogram
	drops         *prometheus.CounterVec
}

func newMetrics(q *Queue, reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_buffer_appends_total",
			Help: "Records committed to the queue.",
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_buffer_commits_total",
			Help: "Group commits (bbolt transactions with fsync) of appended records.",
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_buffer_commit_errors_total",
			Help: "Failed commit attempts (disk full, I/O errors).",
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "smartmaint_edge_buffer_commit_duration_seconds",
			Help:    "Duration of a group commit, including fsync.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_edge_buffer_drops_total",
			Help: "Records lost, by reason (each is accounted for in a gap record).",
		}, []string{"reason"}),
	}
	gauge := func(name, help string, f func(Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(q.Stats()) })
	}
	m.cs = []prometheus.Collector{
		m.appends, m.commits, m.commitErrors, m.commitLatency, m.drops,
		gauge("smartmaint_edge_buffer_records", "Records waiting in the queue (readings, events, gaps).",
			func(s Stats) float64 { return float64(s.Records) }),
		gauge("smartmaint_edge_buffer_bytes", "Bytes waiting in the queue (counted against the budget).",
			func(s Stats) float64 { return float64(s.Bytes) }),
		gauge("smartmaint_edge_buffer_oldest_age_seconds", "Age of the oldest queued record.",
			func(s Stats) float64 { return s.OldestAge.Seconds() }),
		gauge("smartmaint_edge_buffer_runway_hours", "Hours of uplink outage the queue can absorb at the current rate.",
			func(s Stats) float64 { return s.RunwayHours }),
		gauge("smartmaint_edge_buffer_dead_letters", "Batches kept in the dead-letter bucket.",
			func(s Stats) float64 { return float64(s.DeadLetters) }),
	}
	if reg != nil {
		for _, c := range m.cs {
			if err := reg.Register(c); err != nil {
				q.log.Warn("cannot register metric", "error", err)
			}
		}
	}
	return m
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.cs {
		m.reg.Unregister(c)
	}
}
