package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// post sends body to target and classifies the answer: 2xx is success;
// 408, 425, 429 and 5xx are retried; other statuses are permanent. The
// error never contains the URL (a Slack URL is a credential).
func post(ctx context.Context, client *http.Client, target string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: cannot build request", ErrPermanent)
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sm-collector")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL
		}
		return fmt.Errorf("cannot send: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == 408 || resp.StatusCode == 425 || resp.StatusCode == 429 || resp.StatusCode >= 500:
		return fmt.Errorf("receiver answered %s: %q", resp.Status, snippet)
	default:
		return fmt.Errorf("%w: receiver answered %s: %q", ErrPermanent, resp.Status, snippet)
	}
}

// Webhook headers.
const (
	HeaderTimestamp   = "X-Smartmaint-Timestamp"
	HeaderSignature   = "X-Smartmaint-Signature"
	HeaderIdempotency = "Idempotency-Key"
)

// DefaultReplayWindow: a receiver should refuse a signed webhook whose
// timestamp is further than this from its own clock (see VerifySignature).
const DefaultReplayWindow = 5 * time.Minute

// Sign returns the signature header value for a webhook body sent at ts
// (Unix seconds): "v1=" + hex(HMAC-SHA256(secret, ts + "." + body)).
func Sign(secret []byte, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verification errors.
var (
	ErrBadSignature = errors.New("webhook signature does not match")
	ErrStale        = errors.New("webhook timestamp outside the replay window")
)

// VerifySignature checks a received webhook: the signature must match the
// body and timestamp header, and the timestamp must be within window of
// now. Receivers should also remember Idempotency-Key values for at least
// the window to drop redeliveries and replays.
func VerifySignature(secret []byte, tsHeader, sigHeader string, body []byte, now time.Time, window time.Duration) error {
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp header", ErrBadSignature)
	}
	if !hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sigHeader)) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return ErrStale
	}
	return nil
}

// webhookBody is the JSON body of webhook messages.
type webhookBody struct {
	IdempotencyKey string `json:"idempotency_key"`
	Channel        string `json:"channel"`
	Title          string `json:"title"`
	Items          any    `json:"items"`
}

// WebhookSender posts signed JSON to a URL.
type WebhookSender struct {
	URL    string
	Secret []byte
	Client *http.Client
	Now    func() time.Time
}

// Send implements Sender.
func (s *WebhookSender) Send(ctx context.Context, m *Message) error {
	body, err := json.Marshal(webhookBody{IdempotencyKey: m.Key, Channel: m.Channel, Title: m.Title(), Items: m.Items})
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrPermanent, err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ts := now().Unix()
	h := http.Header{}
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, Sign(s.Secret, ts, body))
	h.Set(HeaderIdempotency, m.Key)
	return post(ctx, s.Client, s.URL, body, h)
}

// SlackSender posts to a Slack incoming webhook (text plus blocks).
type SlackSender struct {
	URL    string // secret
	Client *http.Client
}

// Send implements Sender.
func (s *SlackSender) Send(ctx context.Context, m *Message) error {
	type text struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type block struct {
		Type     string `json:"type"`
		Text     *text  `json:"text,omitempty"`
		Elements []text `json:"elements,omitempty"`
	}
	blocks := []block{{Type: "header", Text: &text{"plain_text", truncate(m.Title(), 150)}}}
	for i := range m.Items {
		if len(blocks) >= 48 { // Slack allows 50 blocks
			break
		}
		n := &m.Items[i]
		blocks = append(blocks, block{Type: "section", Text: &text{"mrkdwn",
			truncate(fmt.Sprintf("*%s* <%s|alert %d>\n%s", n.Transition, n.URL, n.AlertID, n.Summary()), 3000)}})
	}
	blocks = append(blocks, block{Type: "context", Elements: []text{{"mrkdwn", "idempotency key: " + m.Key}}})
	body, err := json.Marshal(map[string]any{"text": truncate(m.Title()+"\n"+m.Text(), 3000), "blocks": blocks})
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrPermanent, err)
	}
	h := http.Header{}
	h.Set(HeaderIdempotency, m.Key)
	return post(ctx, s.Client, s.URL, body, h)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 { // do not cut a UTF-8 sequence
		n--
	}
	return s[:n]
}

// AlertmanagerSender posts alerts to Prometheus Alertmanager's v2 API
// (POST {URL}/api/v2/alerts). Alertmanager deduplicates by label set, so a
// redelivered notification only refreshes the same alert.
type AlertmanagerSender struct {
	URL    string
	Client *http.Client
}

type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       *time.Time        `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Send implements Sender.
func (s *AlertmanagerSender) Send(ctx context.Context, m *Message) error {
	out := make([]amAlert, 0, len(m.Items))
	for i := range m.Items {
		n := &m.Items[i]
		a := amAlert{
			Labels: map[string]string{"alertname": "SmartmaintAlert", "alert_id": strconv.FormatInt(n.AlertID, 10),
				"sensor": n.Sensor, "site": n.Site, "asset": n.Asset, "severity": n.Severity, "kind": n.Kind},
			Annotations: map[string]string{"summary": n.Summary(), "url": n.URL, "transition": string(n.Transition),
				"idempotency_key": n.Key},
			StartsAt: n.Since, GeneratorURL: n.URL,
		}
		for k, v := range a.Labels {
			if v == "" {
				delete(a.Labels, k)
			}
		}
		if n.State == "resolved" {
			t := n.At
			a.EndsAt = &t
		}
		out = append(out, a)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("%w: encode: %v", ErrPermanent, err)
	}
	h := http.Header{}
	h.Set(HeaderIdempotency, m.Key)
	u, err := url.JoinPath(s.URL, "/api/v2/alerts")
	if err != nil {
		return fmt.Errorf("%w: bad Alertmanager URL", ErrPermanent)
	}
	return post(ctx, s.Client, u, body, h)
}
