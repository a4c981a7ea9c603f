package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "smartmaint_edge_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	ready := errors.New("broker not connected")
	srv, err := Listen(Options{
		Listen:   "127.0.0.1:0",
		Gatherer: reg,
		Status:   func() Status { return Status{EdgeID: "e1", ReadingsPerSecond: 12.5} },
		Ready:    func(context.Context) error { return ready },
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	base := "http://" + srv.Addr()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "broker not connected") {
		t.Errorf("/readyz not ready = %d %q", code, body)
	}
	ready = nil
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz ready = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "smartmaint_edge_test_total 3") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	code, body := get("/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.EdgeID != "e1" || st.ReadingsPerSecond != 12.5 {
		t.Errorf("/status = %d %v %+v", code, err, st)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Errorf("/nope = %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		listen string
		ok     bool
	}{{"127.0.0.1:9470", true}, {"off", true}, {"", true}, {":9470", true}, {"localhost", false}} {
		err := Config{Listen: tc.listen}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v", tc.listen, err)
		}
	}
}
