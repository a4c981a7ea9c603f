package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/edge/internal/doctor"
	"github.com/smartmaint/smartmaint/shared/testenv"
)

// TestDoctorCommand runs `sm-edge doctor` against the shared broker and a
// collector stand-in: exit 0 with --json when nothing fails, exit 1 with
// a ✗ line and its hint when the collector is down.
func TestDoctorCommand(t *testing.T) {
	t.Parallel()
	brokerURL, prefix := testenv.MQTT(t)
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("doc-" + testenv.RandomID(6)))
	if tok := pub.Connect(); !tok.WaitTimeout(5e9) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	if tok := pub.Publish(prefix+"/s1/level", 1, true, "1.5"); !tok.WaitTimeout(5e9) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	defer func() { pub.Publish(prefix+"/s1/level", 1, true, "").WaitTimeout(5e9) }() // clear the retained value
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-123" || r.URL.Path != "/api/v1/edges/e1/status" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(collector.Close)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, collectorURL string) string {
		f := filepath.Join(dir, name)
		text := fmt.Sprintf("version: 1\nedge_id: e1\ndata_dir: data\nadmin: {listen: \"127.0.0.1:%d\"}\nbroker: {url: %q, client_id: %q}\ncollector: {url: %q, token_file: token}\nsubscriptions:\n  - topic: %s/{site}/{sensor}\n    format: plain\n    profile: generic_4_20ma\n",
			testenv.FreePort(t), brokerURL, "doctor-cli-"+testenv.RandomID(6), collectorURL, prefix)
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}

	out, stderr, code := runEdge(t, "doctor", "--config", write("good.yaml", collector.URL), "--timeout", "3s", "--json")
	var rep struct {
		Results []doctor.Result `json:"results"`
		Failed  int             `json:"failed"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if code != 0 || rep.Failed != 0 {
		t.Fatalf("exit %d, %d failed\n%s\n%s", code, rep.Failed, out, stderr)
	}
	seen := map[string]doctor.Status{}
	for _, r := range rep.Results {
		seen[r.Name] = r.Status
	}
	for _, name := range []string{"config", "broker.tcp", "broker.mqtt", "broker.subscribe", "collector.tcp", "collector.token", "collector.auth", "clock", "disk", "buffer"} {
		if seen[name] != doctor.OK {
			t.Errorf("%s: %q, want ok\n%s", name, seen[name], out)
		}
	}
	if strings.Contains(out, "tok-123") {
		t.Error("the report shows the token")
	}

	out, stderr, code = runEdge(t, "doctor", "--config", write("down.yaml", "http://127.0.0.1:1"), "--timeout", "3s")
	if code != 1 || !strings.Contains(out, "✗ collector.tcp") || !strings.Contains(out, "→ is the collector running") ||
		!strings.Contains(out, "✓ broker.mqtt") || !strings.Contains(stderr, "check(s) failed") {
		t.Fatalf("collector down: exit %d\n%s\n%s", code, out, stderr)
	}

	if _, stderr, code := runEdge(t, "doctor"); code != 2 || !strings.Contains(stderr, `"config" not set`) {
		t.Errorf("no --config: exit %d %q", code, stderr)
	}
}
