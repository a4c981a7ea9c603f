package detect

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the stage's Prometheus metrics (ARCHITECTURE.md §4.8).
type Metrics struct {
	scored    prometheus.Counter
	anomalies prometheus.Counter
	events    *prometheus.CounterVec
	latency   prometheus.Histogram
	swaps     prometheus.Counter
}

// NewMetrics registers the stage's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		scored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_readings_scored_total",
			Help: "Readings scored by an anomaly model.",
		}),
		anomalies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_anomalous_readings_total",
			Help: "Readings whose score reached their model's threshold.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_edge_events_total",
			Help: "Anomaly and limit events emitted, by kind (anomaly, limit) and state (raised, cleared).",
		}, []string{"kind", "state"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "smartmaint_edge_scoring_seconds_per_reading",
			Help:    "Time spent scoring, per reading, measured per batch.",
			Buckets: prometheus.ExponentialBuckets(1e-7, 2, 16), // 100 ns … 3.3 ms
		}),
		swaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_model_swaps_total",
			Help: "Model sets installed in the scoring stage.",
		}),
	}
	for _, c := range []prometheus.Collector{m.scored, m.anomalies, m.events, m.latency, m.swaps} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register detect metrics: %w", err)
		}
	}
	return m, nil
}

func eventLabels(kind, state uint8) (string, string) {
	k, s := "anomaly", "raised"
	if kind == 2 {
		k = "limit"
	}
	if state == 2 {
		s = "cleared"
	}
	return k, s
}
