package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/edge/internal/mapping"
)

const testToken = "s3cret-token"

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "smartmaint_edge_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	ready := errors.New("broker not connected")
	var asked []int
	srv, err := Listen(Options{
		Listen:   "127.0.0.1:0",
		Token:    testToken,
		Gatherer: reg,
		Status: func(n int) Status {
			asked = append(asked, n)
			return Status{EdgeID: "e1", ReadingsPerSecond: 12.5}
		},
		Ready:  func(context.Context) error { return ready },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	base := "http://" + srv.Addr()
	get := func(path, auth string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz", ""); code != 503 || !strings.Contains(body, "broker not connected") {
		t.Errorf("/readyz not ready = %d %q", code, body)
	}
	ready = nil

	right := "Bearer " + testToken
	for _, tc := range []struct {
		path, auth string
		code       int
		body       string // a substring the body must contain
	}{
		{"/healthz", "", 200, "ok\n"},
		{"/readyz", "", 200, "ready"},
		{"/healthz", "Bearer wrong", 200, "ok\n"},
		{"/metrics", "", 401, "Authorization: Bearer"},
		{"/status", "", 401, "admin.token_file"},
		{"/metrics", "Bearer wrong", 401, "wrong bearer token"},
		{"/status", "Bearer wrong", 401, "wrong bearer token"},
		{"/metrics", "Bearer " + testToken + "x", 401, ""},
		{"/metrics", "Bearer " + testToken[:4], 401, ""},
		{"/metrics", "Basic " + testToken, 401, ""},
		{"/metrics", testToken, 401, ""},
		{"/metrics", right, 200, "smartmaint_edge_test_total 3"},
		{"/status", right, 200, `"edge_id": "e1"`},
		{"/status?sensors=all", right, 200, `"edge_id":"e1"`},
		{"/status?sensors=7", right, 200, `"edge_id": "e1"`},
		{"/status?sensors=x", right, 400, "sensors must be"},
		{"/status?sensors=x", "", 401, ""},
		{"/nope", right, 404, ""},
	} {
		code, body := get(tc.path, tc.auth)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s (Authorization %q) = %d %q; want %d with %q", tc.path, tc.auth, code, body, tc.code, tc.body)
		}
		if code == 401 {
			if strings.Contains(body, testToken) {
				t.Errorf("GET %s: 401 body contains the token: %q", tc.path, body)
			}
		}
	}
	// Default, all, 7: the 400 and 401s never reach Status.
	if want := []int{DefaultStatusSensors, 0, 7}; !slices.Equal(asked, want) {
		t.Errorf("Status asked for %v sensors; want %v", asked, want)
	}
	code, body := get("/status", right)
	var st Status
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.EdgeID != "e1" || st.ReadingsPerSecond != 12.5 {
		t.Errorf("/status = %d %v %+v", code, err, st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestListenNeedsToken(t *testing.T) {
	if _, err := Listen(Options{Listen: "127.0.0.1:0", Gatherer: prometheus.NewRegistry()}); err == nil {
		t.Fatal("Listen without a token succeeded")
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data") // does not exist yet
	first, err := LoadToken(Config{}, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 64 {
		t.Errorf("generated token has %d characters; want 64 hex", len(first))
	}
	path := filepath.Join(data, TokenFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v; want 0600", path, fi.Mode().Perm())
	}
	if got, err := ReadToken(path); err != nil || got != first {
		t.Errorf("ReadToken = %v; want the generated token", err)
	}
	again, err := LoadToken(Config{}, data)
	if err != nil || again != first {
		t.Errorf("second LoadToken: %v, same token %v; want it reused", err, again == first)
	}
	if ents, _ := os.ReadDir(data); len(ents) != 1 {
		t.Errorf("data dir holds %d entries; want only %s (no temporary files left)", len(ents), TokenFileName)
	}

	named := filepath.Join(dir, "named.token")
	cfg := Config{TokenFile: named}
	if _, err := LoadToken(cfg, data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadToken with a missing token_file = %v; want not exist (no token generated)", err)
	}
	if err := os.WriteFile(named, []byte("  from-config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadToken(cfg, data); err != nil || got != "from-config" {
		t.Errorf("LoadToken(token_file) = %q, %v", got, err)
	}
	if err := os.WriteFile(named, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadToken(cfg, data); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("LoadToken(empty file) = %v; want empty", err)
	}
	if p := cfg.TokenPath(data); p != named {
		t.Errorf("TokenPath = %q", p)
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

// BenchmarkStatusHandler serves /status with 40,000 sensors seen: the
// former document (every sensor, indented), the bounded default and
// ?sensors=all (compact).
func BenchmarkStatusHandler(b *testing.B) {
	const seen = 40000
	sensors := make([]mapping.SensorStat, seen)
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for i := range sensors {
		sensors[i] = mapping.SensorStat{ID: fmt.Sprintf("site1/line%02d/asset%04d/vib_x", i%20, i), Profile: "triaxial_vibration", Readings: uint64(1000 + i), Last: t0.Add(time.Duration(i) * time.Millisecond)}
	}
	status := func(n int) Status {
		st := Status{EdgeID: "e1", Mapping: mapping.Snapshot{SensorsSeen: seen, Sensors: sensors}}
		if n > 0 {
			st.Mapping.Sensors = sensors[:n]
		}
		return st
	}
	s := &Server{opts: Options{Token: testToken, Status: status, Gatherer: prometheus.NewRegistry()}}
	h := s.Handler()
	for _, bc := range []struct{ name, query string }{
		{"former_all_indented", ""},
		{"default", ""},
		{"all", "?sensors=all"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			handler := h
			if bc.name == "former_all_indented" {
				handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					enc := json.NewEncoder(w)
					enc.SetIndent("", "  ")
					_ = enc.Encode(status(0))
				})
			}
			req := httptest.NewRequest(http.MethodGet, "/status"+bc.query, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			var size int
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				handler.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/doc")
		})
	}
}
