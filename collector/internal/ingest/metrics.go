package ingest

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	readings      *prometheus.CounterVec
	batches       *prometheus.CounterVec
	batchSeconds  prometheus.Histogram
	dbSeconds     prometheus.Histogram
	queueDepth    prometheus.Gauge
	copyFallbacks prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := prometheus.ExponentialBuckets(0.001, 2, 15) // 1 ms … 16 s
	m := &metrics{
		readings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_collector_ingest_readings_total",
			Help: "Readings received in batches, by result (accepted, duplicate, rejected).",
		}, []string{"result"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_collector_ingest_batches_total",
			Help: "Batches handled, by result (stored, replayed, overloaded, invalid, failed, poisoned).",
		}, []string{"result"}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "smartmaint_collector_ingest_batch_seconds",
			Help:    "Time to ingest one batch, from admission wait to commit.",
			Buckets: buckets,
		}),
		dbSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "smartmaint_collector_db_write_seconds",
			Help:    "Time of one batch transaction in the database.",
			Buckets: buckets,
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "smartmaint_collector_ingest_queue_depth",
			Help: "Batches waiting for a write slot.",
		}),
		copyFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_collector_ingest_copy_fallbacks_total",
			Help: "Batches whose direct COPY met a duplicate and were rewritten with deduplication.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.readings, m.batches, m.batchSeconds, m.dbSeconds, m.queueDepth, m.copyFallbacks)
	}
	for _, r := range []string{"accepted", "duplicate", "rejected"} {
		m.readings.WithLabelValues(r)
	}
	return m
}
