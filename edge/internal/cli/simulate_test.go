package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/edge/internal/simulate"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// countSubscriber is a persistent QoS 1 subscriber counting messages.
func countSubscriber(t *testing.T, url, filter string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	o := paho.NewClientOptions().AddBroker(url).SetClientID("cnt-" + testenv.RandomID(6)).SetCleanSession(false).
		SetDefaultPublishHandler(func(paho.Client, paho.Message) { n.Add(1) })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return &n
}

func waitCount(n *atomic.Int64, want int64) int64 {
	deadline := time.Now().Add(20 * time.Second)
	for n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	return n.Load()
}

// `sm-edge simulate` against the embedded `sm-edge broker`: the JSON
// summary on stdout counts exactly what a subscriber receives, the truth
// file lists the scheduled fault, and both commands stop cleanly.
func TestSimulateThroughEmbeddedBroker(t *testing.T) {
	t.Parallel()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	// mochi's connection goroutines may still log after Close returns.
	var bOut, bErr syncBuffer
	brokerDone := make(chan int, 1)
	go func() {
		brokerDone <- Main(ctx, []string{"broker", "--listen", addr, "--data-dir", t.TempDir(), "--log-level", "warn"}, strings.NewReader(""), &bOut, &bErr)
	}()
	if err := testenv.WaitTCP(addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	url := "tcp://" + addr
	got := countSubscriber(t, url, "smtest/cli/#")

	truth := filepath.Join(t.TempDir(), "truth.csv")
	code, out, errOut := runCLI(t, "simulate", "--broker", url, "--topic", "smtest/cli/plant/{site}/{line}/{asset}/{sensor}",
		"--assets", "2", "--rate", "10", "--duration", "1500ms", "--fault", "pump2/flow:step@500ms+500ms",
		"--truth", truth, "--progress", "500ms", "--seed", "9")
	if code != 0 {
		t.Fatalf("simulate exit %d\n%s", code, errOut)
	}
	var sum simulate.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("stdout is not the JSON summary: %v\n%s", err, out)
	}
	if sum.Acked != 2*7*15 || sum.Published != sum.Acked {
		t.Errorf("published %d, acked %d, want %d", sum.Published, sum.Acked, 2*7*15)
	}
	if n := waitCount(got, sum.Acked); n != sum.Acked {
		t.Errorf("subscriber received %d, summary says %d acknowledged", n, sum.Acked)
	}
	for _, w := range []string{"published", "msg/s", "faults active", "done in"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	data, err := os.ReadFile(truth)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "riverside/line1/pump2/flow,pump2,step,true,") {
		t.Errorf("truth file:\n%s", data)
	}

	cancel()
	select {
	case code := <-brokerDone:
		if code != 0 || !strings.Contains(bErr.String(), "dropped 0") {
			t.Errorf("broker exit %d:\n%s", code, bErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not stop")
	}
}

func TestSimulateRejectsBadInput(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "sim.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nassets: 2\nschedule:\n  - pump1:melt@1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"simulate", "--assets", "1", "--fault", "pump9:spike@1s"}, 2, `no asset "pump9" (assets are pump1..pump1)`},
		{[]string{"simulate", "--fault", "pump1:spike"}, 2, "missing @START"},
		{[]string{"simulate", "--rate", "0"}, 2, "rate: 0 Hz"},
		{[]string{"simulate", "--qos", "3"}, 2, "--qos 3"},
		{[]string{"simulate", "--config", bad}, 1, "sim.yaml:4: schedule:"},
		{[]string{"simulate", "--start", "yesterday"}, 2, "--start"},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
