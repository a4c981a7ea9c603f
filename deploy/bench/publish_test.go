//go:build bench

package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// window is the number of QoS 1 publishes the load generator keeps in
// flight.
const window = 1000

// connectMQTT connects a paho client with the given session settings.
func connectMQTT(t *testing.T, url, clientID string, clean bool, onMsg mqtt.MessageHandler) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetKeepAlive(10 * time.Second).SetMaxResumePubInFlight(window).SetWriteTimeout(10 * time.Second)
	if onMsg != nil {
		opts.SetDefaultPublishHandler(onMsg)
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", clientID, url, tok.Error())
	}
	return c
}

// load describes messages to publish: message n goes to topic(n) with
// payload(n, ts), ts the wall clock in µs when its window is built.
type load struct {
	msgs        int
	perMsg      int // readings per message
	topic       func(n int) string
	payload     func(n int, us int64) []byte
	ratePerSec  float64 // messages/s; 0 = as fast as the broker acknowledges
	publishedAt atomic.Int64
}

// value is a 4–20 mA signal inside the profile's limits, with noise.
func value(sensor, n int) float64 {
	return 12 + 2*math.Sin(float64(n)/50+float64(sensor)) + float64((sensor*7919+n*104729)%1000)/2000
}

// singleLoad: one reading per message, round-robin over sensors, topic
// smm/<prefix>/l<k>/a<k>/s<k>.
func singleLoad(prefix string, msgs, sensors int) *load {
	return &load{msgs: msgs, perMsg: 1,
		topic: func(n int) string {
			i := n % sensors
			return fmt.Sprintf("smm/%s/l%d/a%03d/s%05d", prefix, i/1000, (i/10)%100, i)
		},
		payload: func(n int, us int64) []byte {
			return fmt.Appendf(nil, `{"v":%s,"ts":%d}`, strconv.FormatFloat(value(n%sensors, n/sensors), 'f', 4, 64), us)
		},
	}
}

// batchLoad: perMsg readings per message as {"ts":..,"items":[{"s":..,"v":..}]},
// topic smb/<prefix>/l1/a<k> over assets assets.
func batchLoad(prefix string, msgs, perMsg, assets int) *load {
	return &load{msgs: msgs, perMsg: perMsg,
		topic: func(n int) string { return fmt.Sprintf("smb/%s/l1/a%04d", prefix, n%assets) },
		payload: func(n int, us int64) []byte {
			var b strings.Builder
			fmt.Fprintf(&b, `{"ts":%d,"items":[`, us)
			for k := range perMsg {
				if k > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"s":"t%03d","v":%s}`, k, strconv.FormatFloat(value(k, n), 'f', 4, 64))
			}
			b.WriteString("]}")
			return []byte(b.String())
		},
	}
}

// publishers is the number of load-generator clients; each publishes
// the messages n ≡ c (mod publishers), so a sensor (the sensor and asset
// counts are multiples of it) always comes from the same client.
const publishers = 4

// publish publishes the load at QoS 1 with the publishers clients and
// returns when the broker acknowledged every message. Every message of a
// client gets its own microsecond timestamp, so (sensor, time) is unique.
func (l *load) publish(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	var wg sync.WaitGroup
	start := time.Now()
	for c := range publishers {
		wg.Go(func() { l.publishPart(ctx, t, url, c, start) })
	}
	wg.Wait()
}

func (l *load) publishPart(ctx context.Context, t *testing.T, url string, part int, start time.Time) {
	c := connectMQTT(t, url, fmt.Sprintf("bench-pub-%d-%d", part, time.Now().UnixNano()), true, nil)
	defer c.Disconnect(100)
	mine := make([]int, 0, l.msgs/publishers+1)
	for n := part; n < l.msgs; n += publishers {
		mine = append(mine, n)
	}
	rate := l.ratePerSec / publishers
	toks := make([]mqtt.Token, 0, window)
	last := int64(0)
	for next := 0; next < len(mine); {
		if ctx.Err() != nil {
			return
		}
		n := min(window, len(mine)-next)
		if rate > 0 {
			n = min(n, max(1, int(rate/50)))
			if d := time.Until(start.Add(time.Duration(float64(next) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		us := time.Now().UnixMicro()
		if us <= last {
			us = last + 1
		}
		last = us + int64(n) - 1
		toks = toks[:0]
		for j := range n {
			// Message j of the window gets us+j: unique per sensor
			// however the topics repeat.
			m := mine[next+j]
			toks = append(toks, c.Publish(l.topic(m), 1, false, l.payload(m, us+int64(j))))
		}
		for _, tok := range toks {
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Errorf("publish: %v", tok.Error())
				return
			}
		}
		next += n
		l.publishedAt.Add(int64(n))
	}
}

// publishAsync runs publish in the background; the returned function
// waits for it.
func (l *load) publishAsync(ctx context.Context, t *testing.T, url string) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() { l.publish(ctx, t, url) })
	return wg.Wait
}
