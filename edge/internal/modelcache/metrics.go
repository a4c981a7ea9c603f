package modelcache

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	polls          *prometheus.CounterVec
	active         *prometheus.GaugeVec
	verifyFailures *prometheus.CounterVec
	quarantined    prometheus.Counter
	rollbacks      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_edge_model_polls_total",
			Help: "Model manifest polls by result (not_modified, changed, unchanged, error).",
		}, []string{"result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "smartmaint_edge_model_active",
			Help: "1 for the model and version active for each target (no series: built-in detectors).",
		}, []string{"target", "model", "version"}),
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_edge_model_verify_failures_total",
			Help: "Model artifacts refused, by reason (hash, signature, size, cache_corrupt).",
		}, []string{"reason"}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_model_cache_quarantined_total",
			Help: "Corrupt model cache files moved aside.",
		}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_model_rollbacks_total",
			Help: "Models rolled back on this edge (guard or manual).",
		}),
	}
	for _, r := range []string{"hash", "signature", "size", "cache_corrupt"} {
		m.verifyFailures.WithLabelValues(r)
	}
	for _, r := range []PollResult{NotModified, Changed, Unchanged, PollError} {
		m.polls.WithLabelValues(string(r))
	}
	if reg != nil {
		reg.MustRegister(m.polls, m.active, m.verifyFailures, m.quarantined, m.rollbacks)
	}
	return m
}
