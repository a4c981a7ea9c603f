package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/smartmaint/smartmaint/collector/internal/alert"
)

// Message is what one send delivers: one or more notifications (a group)
// for one channel.
type Message struct {
	// Key is the message's idempotency key: the item's key for a single
	// notification, else a digest of the items' keys.
	Key     string
	Channel string
	Items   []alert.Notification
}

// Title is a one-line subject for the message.
func (m *Message) Title() string {
	if len(m.Items) == 1 {
		n := &m.Items[0]
		return fmt.Sprintf("[%s] %s: %s alert on %s", strings.ToUpper(n.Severity), n.Transition, n.Kind, n.Sensor)
	}
	worst := ""
	for _, n := range m.Items {
		if parseSeverity(n.Severity) > parseSeverity(worst) {
			worst = n.Severity
		}
	}
	return fmt.Sprintf("[%s] %d alert notifications", strings.ToUpper(worst), len(m.Items))
}

// Text is the plain-text body: one summary and link per notification.
func (m *Message) Text() string {
	var b strings.Builder
	for i := range m.Items {
		n := &m.Items[i]
		fmt.Fprintf(&b, "%s\n%s\nidempotency key: %s\n\n", n.Summary(), n.URL, n.Key)
	}
	return b.String()
}

func messageKey(items []alert.Notification) string {
	if len(items) == 1 {
		return items[0].Key
	}
	h := sha256.New()
	for _, n := range items {
		h.Write([]byte(n.Key))
		h.Write([]byte{0})
	}
	return "group-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Sender delivers a message to one channel. An error wrapping
// ErrPermanent is not retried. Errors must not contain secrets. A Sender
// is used by one worker goroutine at a time.
type Sender interface {
	Send(ctx context.Context, m *Message) error
}

// ErrPermanent marks a send error that retrying cannot fix (the receiver
// refused the message as invalid).
var ErrPermanent = errors.New("permanent delivery failure")

// Options tune the workers.
type Options struct {
	PollInterval time.Duration
	GroupWindow  time.Duration
	MaxGroup     int
	MaxAttempts  int
	BackoffMin   time.Duration
	BackoffMax   time.Duration
	SendTimeout  time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// DefaultOptions: poll every second (delivery latency when idle), group
// for 10 s (a burst of alerts from one failing machine becomes one
// message), at most 20 per message (a readable e-mail), 20 attempts with
// backoff from 5 s doubling to 10 min (about 2.5 hours of receiver outage
// before giving up), 15 s per send.
func DefaultOptions() Options {
	return Options{PollInterval: time.Second, GroupWindow: 10 * time.Second, MaxGroup: 20, MaxAttempts: 20,
		BackoffMin: 5 * time.Second, BackoffMax: 10 * time.Minute, SendTimeout: 15 * time.Second}
}

// Backoff is the delay before attempt number attempt+1 after attempt
// failures (attempt ≥ 1): lo doubled per earlier failure, capped at hi.
func Backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// Channel is a named sender with its rate limit.
type Channel struct {
	Name   string
	Sender Sender
	// RatePerMinute 0 means unlimited.
	RatePerMinute float64
	Burst         int
}

// Workers runs one delivery loop per channel.
type Workers struct {
	pool     *pgxpool.Pool
	opts     Options
	channels []Channel
	log      *slog.Logger
	m        *Metrics
	// afterSend, when set (tests), runs after a successful send and before
	// the row is marked sent; an error aborts the transaction, as a crash
	// there would.
	afterSend func(ctx context.Context, tx pgx.Tx, m *Message) error
}

// NewWorkers builds workers over pool for channels. m may be nil.
func NewWorkers(pool *pgxpool.Pool, opts Options, channels []Channel, logger *slog.Logger, m *Metrics) *Workers {
	def := DefaultOptions()
	if opts.PollInterval <= 0 {
		opts.PollInterval = def.PollInterval
	}
	if opts.MaxGroup <= 0 {
		opts.MaxGroup = def.MaxGroup
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = def.MaxAttempts
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = def.BackoffMin
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(def.BackoffMax, opts.BackoffMin)
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = def.SendTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Workers{pool: pool, opts: opts, channels: channels, log: logger.With("component", "notify"), m: m}
}

// Run delivers until ctx is done, one goroutine per channel, and returns
// when all have stopped (a send in progress is cut by ctx).
func (w *Workers) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.channels {
		ch := &w.channels[i]
		wg.Go(func() { w.loop(ctx, ch) })
	}
	wg.Wait()
}

func (w *Workers) loop(ctx context.Context, ch *Channel) {
	lim := newLimiter(ch.RatePerMinute/60, ch.Burst, w.opts.Now)
	for ctx.Err() == nil {
		if !lim.wait(ctx) {
			return
		}
		n, err := w.DeliverOnce(ctx, ch)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("outbox delivery round failed; will retry", "channel", ch.Name, "err", err)
		}
		if n > 0 {
			lim.take()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.opts.PollInterval):
		}
	}
}

type row struct {
	id        int64
	attempts  int
	createdAt time.Time
	n         alert.Notification
}

// DeliverOnce claims due notifications of ch (at most MaxGroup, skipping
// rows other workers hold), sends them as one message and marks them sent,
// all in one transaction; on a send error it schedules a retry with
// backoff (or marks them failed after MaxAttempts, or at once for a
// permanent error). It returns how many were delivered.
func (w *Workers) DeliverOnce(ctx context.Context, ch *Channel) (int, error) {
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot begin outbox transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	now := w.opts.Now().UTC()
	rows, err := tx.Query(ctx, `SELECT id, attempts, created_at, payload FROM notification_outbox
		WHERE channel = $1 AND sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2
		ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`, ch.Name, now, w.opts.MaxGroup)
	if err != nil {
		return 0, fmt.Errorf("cannot claim notifications: %w", err)
	}
	var claimed []row
	for rows.Next() {
		var r row
		var payload []byte
		if err := rows.Scan(&r.id, &r.attempts, &r.createdAt, &payload); err != nil {
			rows.Close()
			return 0, fmt.Errorf("cannot read notification: %w", err)
		}
		if err := json.Unmarshal(payload, &r.n); err != nil {
			rows.Close()
			return 0, fmt.Errorf("notification %d has an undecodable payload: %w", r.id, err)
		}
		claimed = append(claimed, r)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("cannot claim notifications: %w", err)
	}
	// Wait until the oldest has waited the group window, so that
	// notifications queued meanwhile join it. Retries go at once.
	if len(claimed) == 0 || (claimed[0].attempts == 0 && now.Before(claimed[0].createdAt.Add(w.opts.GroupWindow))) {
		return 0, nil
	}
	msg := &Message{Channel: ch.Name}
	ids := make([]int64, len(claimed))
	for i, r := range claimed {
		msg.Items = append(msg.Items, r.n)
		ids[i] = r.id
	}
	msg.Key = messageKey(msg.Items)
	sctx, cancel := context.WithTimeout(ctx, w.opts.SendTimeout)
	start := time.Now()
	err = ch.Sender.Send(sctx, msg)
	cancel()
	w.m.observeSend(ch.Name, time.Since(start))
	if err == nil {
		if w.afterSend != nil {
			if err := w.afterSend(ctx, tx, msg); err != nil {
				return 0, err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE notification_outbox SET sent_at = $2, attempts = attempts + 1, last_error = NULL
			WHERE id = ANY($1)`, ids, w.opts.Now().UTC()); err != nil {
			return 0, fmt.Errorf("cannot mark notifications sent: %w", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, fmt.Errorf("cannot mark notifications sent: %w", err)
		}
		w.m.result(ch.Name, "sent", len(ids))
		return len(ids), nil
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	msgErr := err.Error()
	if len(msgErr) > 500 {
		msgErr = msgErr[:500]
	}
	permanent := errors.Is(err, ErrPermanent)
	for _, r := range claimed {
		attempts := r.attempts + 1
		if permanent || attempts >= w.opts.MaxAttempts {
			_, err = tx.Exec(ctx, `UPDATE notification_outbox SET attempts = $2, last_error = $3, failed_at = $4 WHERE id = $1`,
				r.id, attempts, msgErr, now)
			w.m.result(ch.Name, "failed", 1)
			w.log.Error("notification dropped after failed delivery", "channel", ch.Name, "key", r.n.Key,
				"attempts", attempts, "permanent", permanent, "err", msgErr)
		} else {
			next := now.Add(Backoff(attempts, w.opts.BackoffMin, w.opts.BackoffMax))
			_, err = tx.Exec(ctx, `UPDATE notification_outbox SET attempts = $2, last_error = $3, next_attempt_at = $4 WHERE id = $1`,
				r.id, attempts, msgErr, next)
			w.m.result(ch.Name, "retry", 1)
		}
		if err != nil {
			return 0, fmt.Errorf("cannot record failed delivery: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("cannot record failed delivery: %w", err)
	}
	w.log.Warn("notification delivery failed; will retry", "channel", ch.Name, "notifications", len(claimed), "err", msgErr)
	return 0, nil
}

// limiter is a token bucket: rate tokens per second, up to burst. A zero
// rate never limits.
type limiter struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(max(burst, 1)), tokens: float64(max(burst, 1)), last: now(), now: now}
}

func (l *limiter) refill() {
	t := l.now()
	l.tokens = min(l.burst, l.tokens+t.Sub(l.last).Seconds()*l.rate)
	l.last = t
}

// wait blocks until a token is available (without taking it); false when
// ctx ended.
func (l *limiter) wait(ctx context.Context) bool {
	if l.rate <= 0 {
		return ctx.Err() == nil
	}
	for {
		l.refill()
		if l.tokens >= 1 {
			return true
		}
		d := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
		}
	}
}

// take uses one token (one message sent).
func (l *limiter) take() {
	if l.rate <= 0 {
		return
	}
	l.refill()
	l.tokens--
}
