package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Mosquitto is a private broker process owned by one test. Its default
// configuration never drops queued messages (max_queued_messages 0,
// max_inflight_messages 0; see SERVICES.md) and keeps persistent sessions
// in memory across Stop/Start only if Persistence is set in extra config.
type Mosquitto struct {
	// URL is the broker's address, tcp://127.0.0.1:PORT.
	URL  string
	Port int
	// Dir holds the config, log and persistence files.
	Dir string

	t    testing.TB
	conf string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// StartMosquitto starts a private Mosquitto on a free port with the given
// extra configuration lines appended to a no-drop base configuration, and
// stops it when the test ends. It skips (or fails under CI) when the
// mosquitto binary is missing.
func StartMosquitto(t testing.TB, extra string) *Mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr == nil {
			bin = "/usr/sbin/mosquitto"
		} else {
			Missing(t, "mosquitto binary: %v (apt-get install -y mosquitto)", err)
			return nil
		}
	}
	dir := t.TempDir()
	port := FreePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	base := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 0
persistence true
persistence_location %s/
log_dest file %s
`, port, dir, filepath.Join(dir, "mosquitto.log"))
	if os.Geteuid() == 0 {
		// Run as root, mosquitto switches to the user "mosquitto", which
		// cannot write into the test's private directory: it would then
		// neither log nor save its persistence file, and a persistent
		// session (with the messages queued for it) would not survive
		// Stop/Start. Stay root instead.
		base += "user root\n"
	}
	base += extra + "\n"
	if err := os.WriteFile(conf, []byte(base), 0o600); err != nil {
		t.Fatalf("write mosquitto config: %v", err)
	}
	m := &Mosquitto{URL: fmt.Sprintf("tcp://127.0.0.1:%d", port), Port: port, Dir: dir, t: t, conf: conf}
	m.binStart(bin)
	t.Cleanup(m.Stop)
	return m
}

func (m *Mosquitto) binStart(bin string) {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(bin, "-c", m.conf)
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.cmd = cmd
	if err := WaitTCP(fmt.Sprintf("127.0.0.1:%d", m.Port), 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(m.Dir, "mosquitto.log"))
		m.t.Fatalf("mosquitto did not start: %v\n%s", err, log)
	}
}

// Start starts the broker again after Stop, on the same port and with the
// same persistence directory.
func (m *Mosquitto) Start() {
	m.t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	m.binStart(bin)
}

// Stop terminates the broker gracefully (SIGTERM, so it saves its
// persistence file) and waits for it to exit. It is safe to call twice.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-done
	}
	m.cmd = nil
}
