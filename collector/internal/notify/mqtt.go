package notify

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// MQTTSender publishes each notification of a message as JSON to a topic
// built from a template ({site}, {asset}, {severity}, {sensor}), for
// plant andon boards. The connection is opened on first use and kept.
type MQTTSender struct {
	Broker    string
	Topic     string
	QoS       byte
	Retain    bool
	ClientID  string
	Username  string
	Password  string // secret
	TLSConfig *tls.Config

	mu     sync.Mutex
	client paho.Client
}

// DefaultMQTTTopic is the topic template when none is configured.
const DefaultMQTTTopic = "smartmaint/alerts/{site}/{asset}"

func (s *MQTTSender) connect(ctx context.Context) (paho.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil && s.client.IsConnectionOpen() {
		return s.client, nil
	}
	o := paho.NewClientOptions().AddBroker(s.Broker).SetClientID(s.ClientID).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).SetOrderMatters(false)
	if s.Username != "" {
		o.SetUsername(s.Username).SetPassword(s.Password)
	}
	if s.TLSConfig != nil {
		o.SetTLSConfig(s.TLSConfig)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if err := waitToken(ctx, tok); err != nil {
		return nil, fmt.Errorf("cannot connect to MQTT broker: %w", err)
	}
	s.client = c
	return c, nil
}

func waitToken(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Topic returns the topic for one notification.
func (s *MQTTSender) topic(site, asset, severity, sensor string) string {
	t := s.Topic
	if t == "" {
		t = DefaultMQTTTopic
	}
	clean := func(v string) string {
		if v == "" {
			return "_"
		}
		return strings.NewReplacer("/", "_", "+", "_", "#", "_").Replace(v)
	}
	return strings.NewReplacer("{site}", clean(site), "{asset}", clean(asset), "{severity}", clean(severity),
		"{sensor}", clean(sensor)).Replace(t)
}

// Send implements Sender.
func (s *MQTTSender) Send(ctx context.Context, m *Message) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	for i := range m.Items {
		n := &m.Items[i]
		body, err := json.Marshal(map[string]any{"idempotency_key": n.Key, "title": n.Summary(), "notification": n})
		if err != nil {
			return fmt.Errorf("%w: encode: %v", ErrPermanent, err)
		}
		if err := waitToken(ctx, c.Publish(s.topic(n.Site, n.Asset, n.Severity, n.Sensor), s.QoS, s.Retain, body)); err != nil {
			return fmt.Errorf("cannot publish to MQTT: %w", err)
		}
	}
	return nil
}

// Close disconnects from the broker.
func (s *MQTTSender) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		s.client.Disconnect(250)
		s.client = nil
	}
}
