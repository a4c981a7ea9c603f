package alert

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/smartmaint/smartmaint/shared/wire"
)

type metrics struct {
	transitions *prometheus.CounterVec
	eventErrors prometheus.Counter
	// eventsRetried counts events the sweeper tried again; eventsFailed
	// those given up after EventMaxAttempts.
	eventsRetried prometheus.Counter
	eventsFailed  prometheus.Counter
}

func newMetrics(p *Processor, reg prometheus.Registerer) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_collector_alert_transitions_total",
			Help: "Alert transitions recorded, by transition.",
		}, []string{"transition"}),
		eventErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_collector_alert_event_errors_total",
			Help: "Batches whose events could not be turned into alerts (events kept unprocessed).",
		}),
		eventsRetried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_collector_alert_event_retries_total",
			Help: "Retries by the sweeper of events that failed alert processing (one per event and attempt).",
		}),
		eventsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_collector_alert_events_failed_total",
			Help: "Events given up after the configured number of failed attempts (events.failed_at set).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.transitions, m.eventErrors, m.eventsRetried, m.eventsFailed, &stateCollector{p: p})
	}
	return m
}

var alertsDesc = prometheus.NewDesc("smartmaint_collector_alerts",
	"Active (open or acknowledged) alerts, by state and severity.", []string{"state", "severity"}, nil)

// stateCollector counts active alerts at scrape time (one indexed query).
type stateCollector struct{ p *Processor }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- alertsDesc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts := map[[2]string]float64{}
	for _, st := range []State{StateOpen, StateAcknowledged} {
		for s := wire.SeverityWarning; s <= wire.SeverityCritical; s++ {
			counts[[2]string{string(st), s.String()}] = 0
		}
	}
	rows, err := c.p.pool.Query(ctx, `SELECT state, severity, count(*) FROM alerts WHERE state <> 'resolved' GROUP BY 1, 2`)
	if err == nil {
		for rows.Next() {
			var st string
			var sev int16
			var n int64
			if rows.Scan(&st, &sev, &n) == nil {
				counts[[2]string{st, wire.Severity(sev).String()}] = float64(n)
			}
		}
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(alertsDesc, err)
		return
	}
	for k, v := range counts {
		ch <- prometheus.MustNewConstMetric(alertsDesc, prometheus.GaugeValue, v, k[0], k[1])
	}
}
