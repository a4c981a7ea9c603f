package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/edge/internal/config"
	"github.com/smartmaint/smartmaint/edge/internal/memlimit"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

// BenchmarkFootprint measures the memory of the real ingest pipeline
// (paho subscription, mapping, the default scoring ensemble, the durable
// bbolt queue with group commit, the forwarder) in this process while a
// plant of FOOTPRINT_SENSORS sensors (default 20,000) publishes one
// reading per sensor per second through a private Mosquitto for
// FOOTPRINT_SECONDS (default 30; 10 with -short). The forwarder posts to
// an in-process ingest endpoint that decodes each batch and accepts it,
// so the queue stays near empty (steady state, collector up).
//
// It reports the live heap after a full GC per sensor, the heap the GC
// let grow to, and the process's resident memory (which includes the
// publisher and the ingest endpoint, both small). With
// FOOTPRINT_HEAPPROFILE=file it writes a heap profile (sampled every 4 KiB)
// taken under load, for `go tool pprof -sample_index=inuse_space`.
// FOOTPRINT_MEMORY_LIMIT is the config's memory_limit (default 0, what
// sm-edge run applies: 90 % of a cgroup limit, else none; -1 none; N
// bytes), so runs with and without
// it compare the garbage collector's CPU (gc_cpu_%, the runtime's estimate
// of its share of the process's time) and the process's CPU per reading (publisher and endpoint
// included, the same in both).
//
//	go test ./edge/internal/agent -run '^$' -bench Footprint -benchtime 1x
func BenchmarkFootprint(b *testing.B) {
	sensors := envInt(b, "FOOTPRINT_SENSORS", 20_000)
	secs := envInt(b, "FOOTPRINT_SECONDS", 30)
	if testing.Short() {
		secs = min(secs, 10)
	}
	limit := int64(0)
	if s := os.Getenv("FOOTPRINT_MEMORY_LIMIT"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("FOOTPRINT_MEMORY_LIMIT=%q: %v", s, err)
		}
		limit = n
	}
	prevLimit := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prevLimit)
	memlimit.Apply(limit, slog.New(slog.DiscardHandler))
	prevRate := runtime.MemProfileRate
	runtime.MemProfileRate = 4096
	defer func() { runtime.MemProfileRate = prevRate }()
	for b.Loop() {
		footprintRun(b, sensors, time.Duration(secs)*time.Second)
	}
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// ingestStub is the collector's ingest contract reduced to what the
// forwarder needs: decode the batch, accept every item.
type ingestStub struct {
	records atomic.Int64
}

func (s *ingestStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if !strings.HasSuffix(r.URL.Path, "/ingest") {
		w.WriteHeader(http.StatusNoContent) // status reports
		return
	}
	var b wire.Batch
	if err := wire.DecodeBatch(body, &b, 0); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n := len(b.Readings) + len(b.Events) + len(b.Gaps)
	s.records.Add(int64(n))
	_ = json.NewEncoder(w).Encode(wire.IngestResponse{BatchID: b.BatchID, Accepted: n, ServerTime: time.Now()})
}

func footprintRun(b *testing.B, sensors int, dur time.Duration) {
	mq := testenv.StartMosquitto(b, "")
	stub := &ingestStub{}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	dir := b.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("footprint-token-footprint-token\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	text := fmt.Sprintf(`version: 1
edge_id: footprint
data_dir: %s
admin: {listen: "off"}
broker:
  url: %s
  client_id: sm-edge-footprint
  reconnect: {initial: 100ms, max: 500ms}
subscriptions:
  - topic: fp/{site}/{line}/{asset}/{sensor}
    qos: 1
    format: json
    json: {value: v, timestamp: ts, time_unit: us}
    profile: generic_4_20ma
collector:
  url: %s
  token_file: %s
  status_interval: 2s
`, filepath.Join(dir, "data"), mq.URL, srv.URL, tokenFile)
	file := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, profiles, probs := config.Load(file)
	if len(probs) > 0 {
		b.Fatalf("config: %v", probs)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{b}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mapper, err := NewMapper(cfg, profiles, reg, logger)
	if err != nil {
		b.Fatal(err)
	}
	p, err := OpenPipeline(ctx, cfg, mapper, "footprint", logger, reg)
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(Options{Config: cfg, Profiles: profiles, Mapper: mapper, Sink: p, Ready: p.Ready, Extend: p.Extend, Logger: logger, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	pctx, stopPipeline := context.WithCancel(context.Background())
	pdone := make(chan struct{})
	go func() { _ = p.Run(pctx); close(pdone) }()
	adone := make(chan struct{})
	go func() { _ = a.Run(ctx); close(adone) }()
	defer func() {
		cancel()
		<-adone
		stopPipeline()
		<-pdone
		_ = p.Close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !a.sub.Connected() {
		if time.Now().After(deadline) {
			b.Fatal("agent did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}

	topics := make([]string, sensors)
	for i := range topics {
		topics[i] = fmt.Sprintf("fp/s/l%d/a%03d/s%05d", i/1000, (i/10)%100, i)
	}
	// Four publisher connections (one paho client tops out near 12k QoS 1
	// publishes/s on this kind of machine), each with a window of 1,000.
	const pubs = 4
	clients := make([]mqtt.Client, pubs)
	for k := range clients {
		clients[k] = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL).SetClientID(fmt.Sprintf("fp-pub%d", k)).
			SetCleanSession(true).SetWriteTimeout(10 * time.Second))
		if t := clients[k].Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			b.Fatalf("publisher connect: %v", t.Error())
		}
		defer clients[k].Disconnect(100)
	}
	cpu := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/total:cpu-seconds"}}
	metrics.Read(cpu)
	gc0, all0 := cpu[0].Value.Float64(), cpu[1].Value.Float64()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	var published atomic.Int64
	var wg sync.WaitGroup
	for k, c := range clients {
		wg.Go(func() {
			inflight := make(chan mqtt.Token, 1000)
			waiter := make(chan struct{})
			go func() {
				for t := range inflight {
					if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
						b.Errorf("publish: %v", t.Error())
					}
				}
				close(waiter)
			}()
			var payload []byte
			for sec := 0; time.Since(start) < dur; sec++ {
				time.Sleep(time.Until(start.Add(time.Duration(sec) * time.Second)))
				us := time.Now().UnixMicro()
				for i := k; i < len(topics); i += pubs {
					v := 12 + 2*float64((i*7919+sec*104729)%1000)/1000
					payload = fmt.Appendf(payload[:0], `{"v":%.4f,"ts":%d}`, v, us)
					inflight <- c.Publish(topics[i], 1, false, payload)
					published.Add(1)
				}
			}
			close(inflight)
			<-waiter
		})
	}
	wg.Wait()
	if lag := time.Since(start) - dur; lag > dur/10 {
		b.Logf("the publisher fell behind 1 Hz by %s", lag)
	}
	deadline = time.Now().Add(2 * time.Minute)
	for stub.records.Load() < published.Load() {
		if time.Now().After(deadline) {
			b.Fatalf("collector stub got %d of %d records", stub.records.Load(), published.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	metrics.Read(cpu)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	procCPU := tvSec(ru1.Utime) + tvSec(ru1.Stime) - tvSec(ru0.Utime) - tvSec(ru0.Stime)
	// The runtime's own estimates, both in the same (GOMAXPROCS × wall
	// time) units: the GC's share of the process's time.
	gcShare := (cpu[0].Value.Float64() - gc0) / (cpu[1].Value.Float64() - all0)
	hwmUnderLoad := procStatus(b)["VmHWM:"]
	rss := procStatus(b)

	// Heap the GC let grow to before it collected (GOGC headroom), then the
	// live heap after a full collection.
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	goal := s[0].Value.Uint64()
	runtime.GC()
	runtime.GC()
	metrics.Read(s)
	live := s[1].Value.Uint64()
	if f := os.Getenv("FOOTPRINT_HEAPPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			b.Fatal(err)
		}
		_ = out.Close()
	}
	b.ReportMetric(float64(live)/float64(sensors), "live_B/sensor")
	b.ReportMetric(float64(live)/(1<<20), "live_MiB")
	b.ReportMetric(float64(goal)/(1<<20), "heapgoal_MiB")
	b.ReportMetric(float64(s[2].Value.Uint64())/(1<<20), "runtime_total_MiB")
	b.ReportMetric(float64(hwmUnderLoad)/(1<<20), "VmHWM_MiB")
	b.ReportMetric(float64(rss["RssAnon:"])/(1<<20), "RssAnon_MiB")
	b.ReportMetric(float64(rss["RssFile:"])/(1<<20), "RssFile_MiB")
	b.ReportMetric(float64(stub.records.Load())/took.Seconds(), "forwarded/s")
	b.ReportMetric(100*gcShare, "gc_cpu_%")
	b.ReportMetric(procCPU/float64(published.Load())*1e6, "cpu_µs/reading")
	b.ReportMetric(0, "ns/op")
}

func tvSec(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// procStatus returns this process's /proc/self/status memory lines in bytes.
func procStatus(b *testing.B) map[string]int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[2] == "kB" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			out[f[0]] = n << 10
		}
	}
	return out
}
