// Package mqttsub connects to the plant's MQTT broker and hands received
// messages, in batches, to a Handler that maps and stores them.
//
// Delivery follows ARCHITECTURE.md §3.1: automatic acknowledgement is off,
// and the Handler acknowledges each QoS 1/2 message only after its readings
// were durably written (or it was recorded as poison). The session is
// persistent (fixed client id, clean session off), so messages published
// while the agent is away are delivered when it returns, and messages
// received but not yet acknowledged when it stops are delivered again.
//
// Messages pass through a bounded queue to a fixed pool of workers; when
// the queue is full the subscriber stops reading from the broker, so memory
// stays bounded under any input rate. The connection is (re)made with a
// capped exponential backoff. paho.mqtt.golang is hidden behind this
// package.
package mqttsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
)

// Broker connection states, as reported in status.
const (
	StateConnecting   = "connecting"
	StateConnected    = "connected"
	StateDisconnected = "disconnected"
)

// Message is one received MQTT message.
type Message struct {
	Topic     string
	Payload   []byte
	QoS       byte
	Duplicate bool
	Received  time.Time
	msg       mqtt.Message
}

// Ack acknowledges the message to the broker (PUBACK/PUBREC); a no-op for
// QoS 0. Call it only once the message's readings are durable or the
// message has been recorded as poison.

// ackFlushDelay is how long shutdown waits between the last acknowledgement
// and DISCONNECT (see Run); a few writes on loopback take microseconds, so
// this is generous without delaying a shutdown noticeably.
const ackFlushDelay = 100 * time.Millisecond

func (m *Message) Ack() {
	if m.msg != nil {
		m.msg.Ack()
	}
}

// Handler processes received messages. HandleBatch is called concurrently
// from several workers; it must Ack every message it has fully handled and
// leave unacknowledged only the messages it could not store (they are
// redelivered after the next reconnect). ctx is cancelled when the drain
// deadline at shutdown passes. The handler must not retain msgs.
type Handler interface {
	HandleBatch(ctx context.Context, msgs []Message)
}

// Filter is a subscription to make: an MQTT topic filter and its QoS.
type Filter struct {
	Topic string
	QoS   byte
}

// Options configure a Subscriber.
type Options struct {
	Config Config
	// ClientID is the effective client id (Config.ClientID or a default).
	ClientID string
	Filters  []Filter
	Handler  Handler
	Logger   *slog.Logger
	// Registerer receives the subscriber's metrics; nil means unregistered.
	Registerer prometheus.Registerer
}

// Status is the connection state for /status.
type Status struct {
	// URL is the broker URL without credentials.
	URL            string    `json:"url"`
	ClientID       string    `json:"client_id"`
	State          string    `json:"state"`
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	Reconnects     uint64    `json:"reconnects"`
	LastError      string    `json:"last_error,omitempty"`
	Received       uint64    `json:"received"`
	Queued         int       `json:"queued"`
}

// Subscriber owns the broker connection. Create it with New and call Run.
type Subscriber struct {
	opts   Options
	log    *slog.Logger
	client mqtt.Client

	queue    *inbox
	lost     chan error
	received atomic.Uint64

	mu             sync.Mutex
	state          string
	connectedSince time.Time
	reconnects     uint64
	lastErr        string

	// onAttempt, if set (tests), is called before each connection attempt.
	onAttempt func()

	mConnected  prometheus.Gauge
	mReconnects prometheus.Counter
}

// New prepares a subscriber; it does not connect.
func New(opts Options) (*Subscriber, error) {
	if opts.Handler == nil {
		return nil, errors.New("mqttsub: Handler is required")
	}
	if opts.Logger == nil {
		return nil, errors.New("mqttsub: Logger is required")
	}
	if len(opts.Filters) == 0 {
		return nil, errors.New("mqttsub: no subscriptions configured")
	}
	c := opts.Config
	if c.Workers <= 0 || c.Queue <= 0 || c.MaxBatch <= 0 {
		return nil, errors.New("mqttsub: workers, queue and max_batch must be positive (use Default())")
	}
	tlsConf, err := c.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("mqttsub: %w", err)
	}
	password, err := c.Password()
	if err != nil {
		return nil, fmt.Errorf("mqttsub: %w", err)
	}
	s := &Subscriber{
		opts:  opts,
		log:   opts.Logger.With("component", "mqttsub"),
		queue: newInbox(c.Queue, max(c.MaxBatch/4, 16), c.Workers),
		lost:  make(chan error, 1),
		state: StateDisconnected,
		mConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "smartmaint_edge_broker_connected",
			Help: "1 while the MQTT broker connection is up.",
		}),
		mReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smartmaint_edge_broker_reconnects_total",
			Help: "Failed connection attempts and lost connections to the MQTT broker.",
		}),
	}
	if opts.Registerer != nil {
		queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "smartmaint_edge_mqtt_queue_messages",
			Help: "Received messages waiting for a worker.",
		}, func() float64 { return float64(s.queue.len()) })
		received := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "smartmaint_edge_mqtt_messages_received_total",
			Help: "MQTT messages received from the broker and queued for mapping.",
		}, func() float64 { return float64(s.received.Load()) })
		opts.Registerer.MustRegister(s.mConnected, s.mReconnects, received, queued)
	}
	mo := mqtt.NewClientOptions().
		AddBroker(c.URL).
		SetClientID(opts.ClientID).
		SetCleanSession(c.CleanSession).
		SetAutoReconnect(false). // Run reconnects itself, with its own backoff
		SetConnectRetry(false).
		SetAutoAckDisabled(true).
		// Messages are dispatched synchronously into the bounded queue;
		// ordering across workers is not preserved (readings carry their
		// own timestamps), and a full queue pauses reading (backpressure).
		SetOrderMatters(true).
		SetKeepAlive(c.KeepAlive).
		SetConnectTimeout(c.ConnectTimeout).
		SetResumeSubs(false).
		SetDefaultPublishHandler(s.onMessage).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case s.lost <- err:
			default:
			}
		})
	if tlsConf != nil {
		mo.SetTLSConfig(tlsConf)
	}
	if useBufferedConn(c.URL) {
		mo.SetCustomOpenConnectionFn(openBuffered)
	}
	if c.Username != "" {
		mo.SetUsername(c.Username)
		mo.SetPassword(password)
	}
	s.client = mqtt.NewClient(mo)
	return s, nil
}

// onMessage runs on paho's router goroutine for every message.
// When the subscriber is shutting down the message is dropped without
// acknowledgement, so the broker redelivers it to the next session.
func (s *Subscriber) onMessage(_ mqtt.Client, m mqtt.Message) {
	if s.queue.push(Message{Topic: m.Topic(), Payload: m.Payload(), QoS: m.Qos(), Duplicate: m.Duplicate(), Received: time.Now(), msg: m}) {
		s.received.Add(1)
	}
}

// Status returns the connection state.
func (s *Subscriber) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{
		URL: redactURL(s.opts.Config.URL), ClientID: s.opts.ClientID, State: s.state,
		ConnectedSince: s.connectedSince, Reconnects: s.reconnects, LastError: s.lastErr,
		Received: s.received.Load(), Queued: s.queue.len(),
	}
}

// Connected reports whether the broker connection is up.
func (s *Subscriber) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == StateConnected
}

func (s *Subscriber) setState(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
	if state == StateConnected {
		s.connectedSince = time.Now()
		s.mConnected.Set(1)
	} else {
		s.connectedSince = time.Time{}
		s.mConnected.Set(0)
	}
	if err != nil {
		s.lastErr = err.Error()
		s.reconnects++
		s.mReconnects.Inc()
	}
}

// Run connects, subscribes and delivers messages until ctx is cancelled,
// reconnecting with capped exponential backoff. On cancellation it stops
// taking messages, lets the workers finish what was received (bounded by
// DrainTimeout), then disconnects so the last acknowledgements are sent.
func (s *Subscriber) Run(ctx context.Context) error {
	c := s.opts.Config
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	var wg sync.WaitGroup
	for range c.Workers {
		wg.Go(func() { s.worker(drainCtx) })
	}
	s.connectLoop(ctx)

	// Shutdown: no new messages, drain the queue, then disconnect.
	s.queue.close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	timer := time.NewTimer(c.DrainTimeout)
	select {
	case <-done:
		timer.Stop()
	case <-timer.C:
		s.log.Warn("drain timeout passed; unacknowledged messages will be redelivered by the broker", "timeout", c.DrainTimeout)
		cancelDrain()
		<-done
	}
	if s.client.IsConnected() {
		// paho hands acknowledgements to its writer through a forwarding
		// goroutine and DISCONNECT through another channel, and the writer
		// picks between them at random: an ack handed over just before
		// Disconnect can lose the race and the broker then redelivers that
		// message to the next session. Give the writer a moment to send
		// the last acknowledgements first.
		time.Sleep(ackFlushDelay)
		s.client.Disconnect(500) // ms to flush the last acknowledgements
	}
	s.setState(StateDisconnected, nil)
	s.log.Info("disconnected from broker")
	return nil
}

func (s *Subscriber) connectLoop(ctx context.Context) {
	c := s.opts.Config
	attempt := 0
	wait := func() bool {
		d := c.Reconnect.Delay(attempt)
		attempt++
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		if s.onAttempt != nil {
			s.onAttempt()
		}
		s.setState(StateConnecting, nil)
		if err := s.waitToken(ctx, s.client.Connect()); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.setState(StateDisconnected, fmt.Errorf("connect: %w", err))
			s.log.Warn("cannot connect to broker; retrying", "url", redactURL(c.URL), "err", err, "retry_in", c.Reconnect.Delay(attempt))
			if !wait() {
				return
			}
			continue
		}
		filters := make(map[string]byte, len(s.opts.Filters))
		for _, f := range s.opts.Filters {
			filters[f.Topic] = f.QoS
		}
		if err := s.waitToken(ctx, s.client.SubscribeMultiple(filters, nil)); err != nil {
			s.client.Disconnect(0)
			if ctx.Err() != nil {
				return
			}
			s.setState(StateDisconnected, fmt.Errorf("subscribe: %w", err))
			s.log.Warn("cannot subscribe; reconnecting", "err", err)
			if !wait() {
				return
			}
			continue
		}
		// Drain a stale loss notice from the previous connection.
		select {
		case <-s.lost:
		default:
		}
		attempt = 0
		s.setState(StateConnected, nil)
		s.log.Info("connected to broker", "url", redactURL(c.URL), "client_id", s.opts.ClientID, "subscriptions", len(filters))
		select {
		case <-ctx.Done():
			return
		case err := <-s.lost:
			s.setState(StateDisconnected, fmt.Errorf("connection lost: %w", err))
			s.log.Warn("broker connection lost; reconnecting", "err", err)
			if !wait() {
				return
			}
		}
	}
}

// waitToken waits for a paho token, or for ctx.
func (s *Subscriber) waitToken(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Subscriber) worker(ctx context.Context) {
	max := s.opts.Config.MaxBatch
	batch := make([]Message, 0, max)
	for {
		var ok bool
		batch, ok = s.queue.take(batch[:0], max)
		if !ok {
			return
		}
		s.opts.Handler.HandleBatch(ctx, batch)
		clear(batch) // drop payload references
	}
}

// redactURL removes any credentials from a broker URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// DefaultClientID is the client id used when none is configured.
func DefaultClientID(edgeID string) string { return "sm-edge-" + edgeID }
