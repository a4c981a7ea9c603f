package mqttsub

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Watch connects with a clean session, subscribes to filter at QoS 0 and
// calls fn for every message until ctx ends; it is the read-only observer
// behind `sm-edge discover`. fn is called from one goroutine and must not
// retain payload.
func Watch(ctx context.Context, c Config, clientID, filter string, fn func(topic string, payload []byte)) error {
	tlsConf, err := c.TLSConfig()
	if err != nil {
		return err
	}
	password, err := c.Password()
	if err != nil {
		return err
	}
	mo := mqtt.NewClientOptions().AddBroker(c.URL).SetClientID(clientID).SetCleanSession(true).
		SetAutoReconnect(false).SetOrderMatters(true).SetConnectTimeout(max(c.ConnectTimeout, 5*time.Second)).
		SetKeepAlive(30 * time.Second)
	if tlsConf != nil {
		mo.SetTLSConfig(tlsConf)
	}
	if c.Username != "" {
		mo.SetUsername(c.Username)
		mo.SetPassword(password)
	}
	msgs := make(chan mqtt.Message, 4096)
	mo.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	})
	lost := make(chan error, 1)
	mo.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		select {
		case lost <- err:
		default:
		}
	})
	client := mqtt.NewClient(mo)
	t := client.Connect()
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return fmt.Errorf("connect to %s: %w", redactURL(c.URL), err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	defer client.Disconnect(100)
	st := client.Subscribe(filter, 0, nil)
	select {
	case <-st.Done():
		if err := st.Error(); err != nil {
			return fmt.Errorf("subscribe to %q: %w", filter, err)
		}
	case <-ctx.Done():
		return nil
	}
	for {
		select {
		case m := <-msgs:
			fn(m.Topic(), m.Payload())
		case err := <-lost:
			return fmt.Errorf("connection to broker lost: %w", err)
		case <-ctx.Done():
			return nil
		}
	}
}
