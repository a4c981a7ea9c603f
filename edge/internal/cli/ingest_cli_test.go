package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartmaint/smartmaint/edge/internal/agent"
	"github.com/smartmaint/smartmaint/edge/internal/config"
	"github.com/smartmaint/smartmaint/shared/testenv"
	"github.com/smartmaint/smartmaint/shared/wire"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigExampleValidates(t *testing.T) {
	code, out, _ := runCLI(t, "config", "example")
	if code != 0 || !strings.Contains(out, "subscriptions:") {
		t.Fatalf("config example: code %d, output %.100q", code, out)
	}
	file := writeFile(t, "edge.yaml", out)
	code, out, errOut := runCLI(t, "config", "validate", "--config", file)
	if code != 0 || out != "" || !strings.Contains(errOut, "ok") {
		t.Errorf("validate example: code %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	file := writeFile(t, "bad.yaml", `version: 1
edge_id: e1
broker:
  url: tcp://localhost:1883
  password_file: nope.txt
  username: u
subscriptions:
  - topic: a/{sensor}
    qos: 5
    profile: nosuch
    colour: red
collector: {url: "http://127.0.0.1:8080"}
`)
	code, out, errOut := runCLI(t, "config", "validate", "--config", file)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	for _, want := range []string{
		file + ":5: broker.password_file: cannot open " + filepath.Join(filepath.Dir(file), "nope.txt") + ": no such file or directory",
		file + ":9: subscriptions[0].qos: must be 0, 1 or 2 (got 5)",
		file + `:10: subscriptions[0].profile: unknown profile "nosuch"`,
		file + ":11: subscriptions[0].colour: unknown field",
		"4 problem(s)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing", out)
	}
}

// TestRunNamesMissingToken: without the collector token, run stops before
// touching the broker and says which file it could not read.
func TestRunNamesMissingToken(t *testing.T) {
	_, ex, _ := runCLI(t, "config", "example")
	dir := t.TempDir()
	ex = strings.Replace(ex, "data_dir: /var/lib/sm-edge", "data_dir: "+dir, 1)
	ex = strings.Replace(ex, "token_file: /etc/sm-edge/collector.token", "token_file: "+dir+"/missing.token", 1)
	file := writeFile(t, "edge.yaml", ex)
	t.Setenv("SM_EDGE_TOKEN", "")
	code, _, errOut := runCLI(t, "run", "--config", file)
	if code == 0 || !strings.Contains(errOut, "collector token") || !strings.Contains(errOut, dir+"/missing.token") {
		t.Errorf("run: code %d, stderr %q", code, errOut)
	}
}

type memSink struct {
	mu sync.Mutex
	n  int
}

func (s *memSink) Write(_ context.Context, rs []wire.Reading) error {
	s.mu.Lock()
	s.n += len(rs)
	s.mu.Unlock()
	return nil
}
func (s *memSink) WriteEvents(context.Context, []wire.Event) error { return nil }
func (s *memSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func publishAll(t *testing.T, url string, retained bool, msgs map[string]string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("pub-" + testenv.RandomID(3)))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	for topic, p := range msgs {
		if tok := c.Publish(topic, 1, retained, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
}

// TestStatusCommand runs an agent with its admin endpoint and checks what
// `sm-edge status` prints about it.
func TestStatusCommand(t *testing.T) {
	mq := testenv.StartMosquitto(t, "")
	file := writeFile(t, "edge.yaml", fmt.Sprintf(`version: 1
edge_id: status-test
data_dir: data
admin: {listen: "127.0.0.1:0"}
broker: {url: "%s"}
subscriptions:
  - topic: plant/{asset}/{sensor}
    json: {value: v}
    profile_rules: [{match: "vib*", profile: triaxial_vibration}]
collector: {url: "http://127.0.0.1:8080"}
`, mq.URL))
	cfg, profiles, probs := config.Load(file)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	sink := &memSink{}
	a, err := agent.New(agent.Options{Config: cfg, Profiles: profiles, Sink: sink, Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(mustStatus(t, file, a.AdminAddr()), "connected tcp://") {
		if time.Now().After(deadline) {
			t.Fatal("agent did not connect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	publishAll(t, mq.URL, false, map[string]string{
		"plant/pump1/vib_x": `{"v": 1.5}`,
		"plant/pump1/vib_y": `{"v": 1.6}`,
		"plant/pump1/temp":  `{"v": 40}`,
		"plant/pump2/vib_x": `{"v": "NaN"}`,
		"plant/pump3/vib_z": `not json`,
	})
	for sink.count() < 2 || !strings.Contains(mustStatus(t, file, a.AdminAddr()), "bad_payload") {
		if time.Now().After(deadline) {
			t.Fatalf("readings %d; status:\n%s", sink.count(), mustStatus(t, file, a.AdminAddr()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := mustStatus(t, file, a.AdminAddr())
	for _, want := range []string{
		"status-test (sm-edge v-test)",
		"client id sm-edge-status-test",
		"plant/{asset}/{sensor}",
		"Sensors seen (2)",
		"pump1/vib_x", "triaxial_vibration",
		"Unmapped topics (1)", "plant/pump1/temp", "no_profile",
		"Decode errors (2)", "non_finite=1", "bad_payload=1",
		`"not json"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	code, jsonOut, _ := runCLI(t, "status", "--config", file, "--admin", a.AdminAddr(), "--json")
	if code != 0 || !strings.Contains(jsonOut, `"edge_id": "status-test"`) || !strings.Contains(jsonOut, `"sensors_seen": 2`) {
		t.Errorf("status --json: %d %.200s", code, jsonOut)
	}
	// The token file the agent generated, named directly.
	tokenFile := cfg.Admin.TokenPath(cfg.DataDir)
	if code, out, errOut := runCLI(t, "status", "--admin", a.AdminAddr(), "--token-file", tokenFile); code != 0 || !strings.Contains(out, "Sensors seen (2)") {
		t.Errorf("status --token-file: %d %s %s", code, out, errOut)
	}
	// A wrong token: the message names the file used and what to do.
	wrong := writeFile(t, "wrong.token", "not-the-token\n")
	code, _, errOut := runCLI(t, "status", "--admin", a.AdminAddr(), "--token-file", wrong)
	if code == 0 || !strings.Contains(errOut, "refused the admin token in "+wrong) || !strings.Contains(errOut, "--config") {
		t.Errorf("status with a wrong token: %d %q", code, errOut)
	}
	// No readable token file at all.
	missing := filepath.Join(t.TempDir(), "none.token")
	code, _, errOut = runCLI(t, "status", "--admin", a.AdminAddr(), "--token-file", missing)
	if code == 0 || !strings.Contains(errOut, "no admin token") || !strings.Contains(errOut, missing) {
		t.Errorf("status without a token file: %d %q", code, errOut)
	}
}

func mustStatus(t *testing.T, file, addr string) string {
	t.Helper()
	code, out, errOut := runCLI(t, "status", "--config", file, "--admin", addr)
	if code != 0 {
		t.Fatalf("status: %d %s", code, errOut)
	}
	return out
}

func TestStatusCommandNoAgent(t *testing.T) {
	code, _, errOut := runCLI(t, "status", "--admin", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "--timeout", "2s")
	if code == 0 || !strings.Contains(errOut, "cannot reach the agent") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}

// TestDiscoverCommand watches a broker holding retained messages in three
// formats and checks the report and that the proposed subscriptions,
// pasted into a config, validate.
func TestDiscoverCommand(t *testing.T) {
	mq := testenv.StartMosquitto(t, "")
	msgs := map[string]string{
		"plant/s1/l1/pump1/vib_x": `{"value": 1.5, "ts": 1764151200000, "quality": "good"}`,
		"plant/s1/l1/pump1/temp":  `{"value": 40.1, "ts": 1764151200000, "quality": "good"}`,
		"plant/s1/l2/pump2/vib_x": `{"value": 1.1, "ts": 1764151200000, "quality": "good"}`,
		"legacy/tank1/level":      "12.5",
		"legacy/tank2/level":      "7",
		"site/s1/plc3/analog":     `{"time": "2026-11-26T10:00:00Z", "channels": [{"tag": "AI01", "mA": 12.1}]}`,
		"misc/firmware":           "\xff\xfe\x00\x01",
	}
	publishAll(t, mq.URL, true, msgs)
	code, out, errOut := runCLI(t, "discover", "--broker", mq.URL, "--duration", "1500ms")
	if code != 0 {
		t.Fatalf("discover: %d %s", code, errOut)
	}
	for _, want := range []string{
		"# sm-edge discover: 7 topics",
		"plant/s1/l1/pump1/vib_x", "json", "value=value timestamp=ts quality=quality",
		"legacy/tank1/level", "plain",
		"items=channels sensor=tag value=mA",
		"misc/firmware", "binary",
		"topic: plant/s1/{line}/{asset}/{sensor}",
		"topic: legacy/{sensor}/level",
		"topic: site/s1/plc3/analog",
		"profile: triaxial_vibration",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("discover output lacks %q:\n%s", want, out)
		}
	}
	cfgText := "version: 1\nedge_id: d1\ncollector: {url: \"http://127.0.0.1:8080\"}\n" + out
	cfgText = strings.ReplaceAll(cfgText, "profile_rules:", "profile: generic_4_20ma\n      profile_rules:")
	file := writeFile(t, "edge.yaml", cfgText)
	if code, _, errOut := runCLI(t, "config", "validate", "--config", file); code != 0 {
		t.Errorf("proposal does not validate:\n%s\n%s", errOut, cfgText)
	}
}
