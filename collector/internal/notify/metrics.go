package notify

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the notification metrics. A nil *Metrics records nothing.
type Metrics struct {
	results *prometheus.CounterVec
	send    *prometheus.HistogramVec
}

// NewMetrics registers the notification metrics on reg, including the
// outbox depth and oldest age per channel, read from pool at scrape time.
func NewMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smartmaint_collector_notifications_total",
			Help: "Notifications by channel and result (sent, retry, failed).",
		}, []string{"channel", "result"}),
		send: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smartmaint_collector_notification_send_seconds",
			Help:    "Time to send one message, by channel.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}, []string{"channel"}),
	}
	reg.MustRegister(m.results, m.send, &outboxCollector{pool: pool})
	return m
}

func (m *Metrics) result(channel, result string, n int) {
	if m != nil {
		m.results.WithLabelValues(channel, result).Add(float64(n))
	}
}

func (m *Metrics) observeSend(channel string, d time.Duration) {
	if m != nil {
		m.send.WithLabelValues(channel).Observe(d.Seconds())
	}
}

var (
	depthDesc = prometheus.NewDesc("smartmaint_collector_outbox_pending",
		"Notifications waiting in the outbox (not sent, not failed), by channel.", []string{"channel"}, nil)
	ageDesc = prometheus.NewDesc("smartmaint_collector_outbox_oldest_age_seconds",
		"Age of the oldest pending notification, by channel.", []string{"channel"}, nil)
)

type outboxCollector struct{ pool *pgxpool.Pool }

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- depthDesc; ch <- ageDesc }

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := c.pool.Query(ctx, `SELECT channel, count(*), min(created_at) FROM notification_outbox
		WHERE sent_at IS NULL AND failed_at IS NULL GROUP BY channel`)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(depthDesc, err)
		return
	}
	defer rows.Close()
	now := time.Now()
	for rows.Next() {
		var name string
		var n int64
		var oldest time.Time
		if err := rows.Scan(&name, &n, &oldest); err != nil {
			ch <- prometheus.NewInvalidMetric(depthDesc, err)
			return
		}
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(n), name)
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, now.Sub(oldest).Seconds(), name)
	}
	if err := rows.Err(); err != nil {
		ch <- prometheus.NewInvalidMetric(depthDesc, err)
	}
}
