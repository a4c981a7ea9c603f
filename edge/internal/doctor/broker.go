package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/smartmaint/smartmaint/edge/internal/mapping"
)

// DoctorClientSuffix is appended to the agent's client id for the
// doctor's MQTT session, so the doctor never takes over (and never
// cleans) the agent's persistent session.
const DoctorClientSuffix = "-doctor"

// listenWindow is how long the subscribe check listens for traffic (at
// most the timeout): long enough for retained messages and gateways that
// publish every second, short enough for an interactive check.
const listenWindow = 2 * time.Second

// brokerChecks runs broker.tcp, broker.tls, broker.cert, broker.mqtt and
// broker.subscribe.
func (r *runner) brokerChecks(ctx context.Context) []Result {
	bc := r.cfg.Broker
	u, err := url.Parse(bc.URL)
	if err != nil || u.Host == "" {
		return []Result{{Name: "broker.tcp", Status: Fail, Detail: fmt.Sprintf("broker.url %q is not a usable URL", bc.URL),
			Hint: "set broker.url to e.g. tcp://broker.plant.local:1883 or ssl://broker.plant.local:8883"}}
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return []Result{{Name: "broker.tcp", Status: Fail, Detail: fmt.Sprintf("broker.url %q has no port", bc.URL),
			Hint: "add the port: 1883 for plain MQTT, 8883 for MQTT over TLS"}}
	}
	addr := net.JoinHostPort(host, port)
	var out []Result
	conn, res := dialTCP(ctx, r.opts.Timeout, "broker", "broker.url", addr)
	out = append(out, res)
	if conn == nil {
		return append(out,
			Result{Name: "broker.mqtt", Status: Skip, Detail: "broker not reachable"},
			Result{Name: "broker.subscribe", Status: Skip, Detail: "broker not reachable"})
	}
	if bc.IsTLS() {
		tc, err := bc.TLSConfig()
		if err != nil {
			_ = conn.Close()
			out = append(out, Result{Name: "broker.tls", Status: Fail, Detail: err.Error(),
				Hint: "fix broker.tls (ca_file, cert_file, key_file must be readable PEM files): `sm-edge config validate` shows the line"})
			return append(out, Result{Name: "broker.mqtt", Status: Skip, Detail: "no usable TLS configuration"},
				Result{Name: "broker.subscribe", Status: Skip, Detail: "no usable TLS configuration"})
		}
		st, res := handshake(ctx, r.opts.Timeout, conn, tc, "broker", "broker.tls", host)
		out = append(out, res)
		certs, errs := certsOf(bc.TLS.CAFile, bc.TLS.CertFile, st)
		cres := checkCerts("broker.cert", "broker", "broker.tls", certs, r.opts.Now())
		if len(errs) > 0 {
			cres.Status, cres.Detail = Fail, strings.Join(errs, "; ")
			cres.Hint = "broker.tls files must be readable PEM certificates"
		}
		if len(certs) > 0 || len(errs) > 0 {
			out = append(out, cres)
		}
		if st == nil {
			return append(out, Result{Name: "broker.mqtt", Status: Skip, Detail: "TLS handshake failed"},
				Result{Name: "broker.subscribe", Status: Skip, Detail: "TLS handshake failed"})
		}
	} else {
		_ = conn.Close()
	}
	r.brokerReachable = true
	return append(out, r.brokerMQTT(ctx)...)
}

// brokerMQTT connects with the configured credentials under a throw-away
// client id and a clean session, then subscribes to every pattern.
func (r *runner) brokerMQTT(ctx context.Context) []Result {
	bc := r.cfg.Broker
	clientID := r.cfg.ClientID() + DoctorClientSuffix
	mres := Result{Name: "broker.mqtt"}
	skipSub := func(why string) []Result {
		return []Result{mres, {Name: "broker.subscribe", Status: Skip, Detail: why}}
	}
	password, err := bc.Password()
	if err != nil {
		mres.Status, mres.Detail = Fail, err.Error()
		mres.Hint = "the broker password is read from broker.password_file or the variable in broker.password_env: make it readable by the user running sm-edge"
		return skipSub("no password")
	}
	tc, _ := bc.TLSConfig() // checked by the TLS step
	mo := mqtt.NewClientOptions().AddBroker(bc.URL).SetClientID(clientID).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(r.opts.Timeout).
		SetKeepAlive(30 * time.Second).SetOrderMatters(false)
	if tc != nil {
		mo.SetTLSConfig(tc)
	}
	if bc.Username != "" {
		mo.SetUsername(bc.Username)
		mo.SetPassword(password)
	}
	client := mqtt.NewClient(mo)
	start := time.Now()
	if err := waitToken(ctx, r.opts.Timeout, client.Connect()); err != nil {
		mres.Status = Fail
		mres.Detail, mres.Hint = explainConnect(err, bc.Username, clientID)
		return skipSub("MQTT connect failed")
	}
	defer client.Disconnect(100)
	mres.Status = OK
	who := "anonymously"
	if bc.Username != "" {
		who = fmt.Sprintf("as %q", bc.Username)
	}
	mres.Detail = fmt.Sprintf("MQTT CONNECT accepted %s in %s (client id %s, clean session; the agent's session %s is not touched)",
		who, roundDur(time.Since(start)), clientID, r.cfg.ClientID())
	return []Result{mres, r.brokerSubscribe(ctx, client)}
}

func waitToken(ctx context.Context, timeout time.Duration, t mqtt.Token) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-tm.C:
		return fmt.Errorf("no answer within %s: %w", timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// explainConnect turns a CONNECT failure into a detail and a hint.
func explainConnect(err error, username, clientID string) (string, string) {
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised),
		strings.Contains(err.Error(), "bad user name or password"), strings.Contains(err.Error(), "not Authorized"):
		if username == "" {
			return fmt.Sprintf("the broker refused an anonymous connection: %v", err),
				"the broker requires credentials: set broker.username and broker.password_file (or broker.password_env)"
		}
		return fmt.Sprintf("the broker refused user %q: %v", username, err),
			"check broker.username and the password in broker.password_file / broker.password_env (no trailing spaces), and that the broker's ACL lets this user connect"
	case errors.Is(err, packets.ErrorRefusedIDRejected), strings.Contains(err.Error(), "identifier rejected"):
		return fmt.Sprintf("the broker rejected the client id %q: %v", clientID, err),
			"the broker restricts client ids (length or prefix): set broker.client_id to an id it accepts"
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		return fmt.Sprintf("the broker answered but is unavailable: %v", err), "the broker is overloaded or starting: try again in a minute; tell whoever runs it if it persists"
	case errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return fmt.Sprintf("the broker does not speak MQTT 3.1.1: %v", err), "sm-edge needs an MQTT 3.1.1 capable broker"
	case isTimeout(err):
		return fmt.Sprintf("no CONNACK from the broker: %v", err),
			"the port accepts connections but no MQTT answer came: is it really an MQTT port (plain 1883, TLS 8883; ws:// needs the websocket listener)?"
	}
	return fmt.Sprintf("MQTT CONNECT failed: %v", err), "check broker.url (scheme and port) and the broker's log"
}

// brokerSubscribe subscribes to each configured pattern's filter at its
// QoS and reports the broker's grant (a refusal is 0x80), then listens
// for a moment and reports the traffic seen: a broker may grant a
// subscription its ACL hides every message of (Mosquitto does for MQTT
// 3.1.1 clients), and then silence is the only sign.
func (r *runner) brokerSubscribe(ctx context.Context, client mqtt.Client) Result {
	res := Result{Name: "broker.subscribe", Status: OK}
	type sub struct {
		filter string
		qos    byte
		seen   atomic.Int64
	}
	var refused, bad []string
	var granted []*sub
	for i, s := range r.cfg.Subscriptions {
		p, err := mapping.ParsePattern(s.Topic)
		if err != nil {
			bad = append(bad, fmt.Sprintf("subscriptions[%d] %q: %v", i, s.Topic, err))
			continue
		}
		sb := &sub{filter: p.Filter(), qos: s.QoSOrDefault()}
		tok := client.Subscribe(sb.filter, sb.qos, func(mqtt.Client, mqtt.Message) { sb.seen.Add(1) })
		if err := waitToken(ctx, r.opts.Timeout, tok); err != nil {
			refused = append(refused, fmt.Sprintf("%s: %v", sb.filter, err))
			continue
		}
		got := byte(0x80)
		if st, ok := tok.(*mqtt.SubscribeToken); ok {
			if g, ok := st.Result()[sb.filter]; ok {
				got = g
			}
		}
		if got == 0x80 {
			refused = append(refused, sb.filter)
			continue
		}
		if got < sb.qos {
			sb.qos = got
		}
		granted = append(granted, sb)
	}
	if len(refused) > 0 || len(bad) > 0 {
		res.Status = Fail
		var parts []string
		if len(refused) > 0 {
			parts = append(parts, fmt.Sprintf("the broker refused %d of %d subscription(s): %s", len(refused), len(r.cfg.Subscriptions), strings.Join(refused, ", ")))
			res.Hint = fmt.Sprintf("the broker's ACL does not let %s read these topics: ask whoever runs the broker to grant read access, or fix the topic in subscriptions", r.brokerUser())
		}
		if len(bad) > 0 {
			parts = append(parts, strings.Join(bad, "; "))
			if res.Hint == "" {
				res.Hint = "fix the subscription topics in the config (`sm-edge config validate` shows the line)"
			}
		}
		res.Detail = strings.Join(parts, "; ")
		return res
	}
	wait := min(r.opts.Timeout, listenWindow)
	tm := time.NewTimer(wait)
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
	tm.Stop()
	var parts []string
	total := int64(0)
	for _, sb := range granted {
		n := sb.seen.Load()
		total += n
		parts = append(parts, fmt.Sprintf("%s (QoS %d): %d message(s)", sb.filter, sb.qos, n))
	}
	res.Detail = fmt.Sprintf("%d subscription(s) granted; seen within %s: %s", len(granted), wait, strings.Join(parts, ", "))
	if total == 0 {
		res.Status = Warn
		res.Hint = fmt.Sprintf("no message arrived: if the gateways publish more often than every %s, the topics differ from the patterns (`sm-edge discover --broker URL` lists what is published) or the broker's ACL hides them from %s", wait, r.brokerUser())
	}
	return res
}

func (r *runner) brokerUser() string {
	if u := r.cfg.Broker.Username; u != "" {
		return fmt.Sprintf("user %q", u)
	}
	return "anonymous clients"
}
