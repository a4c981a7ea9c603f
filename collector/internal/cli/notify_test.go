package cli

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartmaint/smartmaint/collector/internal/notify"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestNotifyReceiveVerifiesAndDedups(t *testing.T) {
	secret := []byte("s3cret")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var out, errw lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveReceiver(ctx, l, secret, &out, &errw) }()
	defer func() { cancel(); <-done }()

	url := "http://" + l.Addr().String() + "/"
	post := func(body, key string, sign []byte, ts time.Time) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("X-Smartmaint-Timestamp", strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set("X-Smartmaint-Signature", notify.Sign(sign, ts.Unix(), []byte(body)))
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	tests := []struct {
		name string
		body string
		key  string
		sign []byte
		ts   time.Time
		want int
	}{
		{"good", `{"title":"one"}`, "k1", secret, now, 200},
		{"redelivery", `{"title":"one"}`, "k1", secret, now, 200},
		{"wrong secret", `{"title":"two"}`, "k2", []byte("other"), now, 401},
		{"replayed old message", `{"title":"three"}`, "k3", secret, now.Add(-time.Hour), 401},
	}
	for _, tc := range tests {
		if got := post(tc.body, tc.key, tc.sign, tc.ts); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"idempotency_key":"k1"`) || !strings.Contains(lines[0], `"title":"one"`) {
		t.Errorf("printed %q, want exactly the one accepted message", out.String())
	}
	if !strings.Contains(errw.String(), "does not match") || !strings.Contains(errw.String(), "replay window") {
		t.Errorf("stderr %q lacks the refusal reasons", errw.String())
	}
}
