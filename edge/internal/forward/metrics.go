package forward

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	reg     prometheus.Registerer
	cs      []prometheus.Collector
	batches *prometheus.CounterVec
	records *prometheus.CounterVec
	status  *prometheus.CounterVec
	latency prometheus.Histogram
}

func newMetrics(f *Forwarder, reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_edge_forward_batches_total",
			Help: "Batch delivery attempts by result (ok, retry, unauthorized, rejected, dead_letter, too_large).",
		}, []string{"result"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_edge_forward_records_total",
			Help: "Records the collector answered for, by result (accepted, duplicate, rejected).",
		}, []string{"result"}),
		status: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_edge_forward_status_reports_total",
			Help: "Status reports posted, by result.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "smartmaint_edge_forward_latency_seconds",
			Help:    "Round trip of a batch POST to the collector.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	m.cs = []prometheus.Collector{m.batches, m.records, m.status, m.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "smartmaint_edge_uplink_up",
			Help: "1 when the last request to the collector succeeded.",
		}, func() float64 { return b2f(f.State().Up) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "smartmaint_edge_uplink_unauthorized",
			Help: "1 while the collector refuses the edge's credential (alarm uplink_unauthorized).",
		}, func() float64 {
			for _, a := range f.State().Alarms {
				if a == AlarmUnauthorized {
					return 1
				}
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "smartmaint_edge_clock_offset_seconds",
			Help: "The collector's clock minus the edge's, estimated from answers.",
		}, func() float64 { return f.State().ClockOffset.Seconds() }),
	}
	if reg != nil {
		for _, c := range m.cs {
			if err := reg.Register(c); err != nil {
				f.log.Warn("cannot register metric", "error", err)
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
