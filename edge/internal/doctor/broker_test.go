package doctor

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartmaint/smartmaint/shared/testenv"
)

// TestBrokerPlain checks the broker steps against the shared Mosquitto
// and against addresses where no broker answers.
func TestBrokerPlain(t *testing.T) {
	t.Parallel()
	brokerURL, prefix := testenv.MQTT(t)
	publishRetained(t, brokerURL, "", "", prefix+"/s1/level", "4.2")
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers MQTT
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	tests := []struct {
		name  string
		url   string
		wants []want
	}{
		{"reachable", brokerURL, []want{
			{name: "broker.tcp", status: OK, detail: []string{"reachable"}},
			{name: "broker.mqtt", status: OK, detail: []string{"accepted anonymously", "-doctor, clean session"}},
			{name: "broker.subscribe", status: OK, detail: []string{prefix + "/+/+ (QoS 1): 1 message(s)"}},
		}},
		{"refused", "tcp://127.0.0.1:1", []want{
			{name: "broker.tcp", status: Fail, detail: []string{"127.0.0.1:1 refused"}, hint: []string{"is the broker running", "broker.url"}},
			{name: "broker.mqtt", status: Skip},
			{name: "broker.subscribe", status: Skip},
		}},
		{"unknown host", "tcp://no-such-broker.invalid:1883", []want{
			{name: "broker.tcp", status: Fail, detail: []string{"cannot resolve no-such-broker.invalid"}, hint: []string{"broker.url"}},
		}},
		{"not an MQTT port", "tcp://" + silent.Addr().String(), []want{
			{name: "broker.tcp", status: OK},
			{name: "broker.mqtt", status: Fail, detail: []string{"no CONNACK"}, hint: []string{"really an MQTT port"}},
			{name: "broker.subscribe", status: Skip},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := writeConfig(t, setup{broker: "  url: " + tt.url, topic: prefix + "/{site}/{sensor}"})
			check(t, runDoctor(t, file, 2*time.Second), tt.wants...)
		})
	}
}

// TestBrokerKeepsAgentSession: while the agent holds its persistent
// session, the doctor connects under its own client id, so the broker
// does not take the session over (it would disconnect the agent).
func TestBrokerKeepsAgentSession(t *testing.T) {
	t.Parallel()
	brokerURL, prefix := testenv.MQTT(t)
	file := writeConfig(t, setup{broker: "  url: " + brokerURL + "\n  client_id: " + strings.ReplaceAll(prefix, "/", "-"), topic: prefix + "/{a}/{b}"})
	lost := make(chan error, 1)
	agent := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID(strings.ReplaceAll(prefix, "/", "-")).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err }))
	if tok := agent.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("agent connect: %v", tok.Error())
	}
	defer agent.Disconnect(0)
	rep := runDoctor(t, file, 5*time.Second)
	check(t, rep, want{name: "broker.mqtt", status: OK, detail: []string{strings.ReplaceAll(prefix, "/", "-") + "-doctor"}})
	// A takeover would have closed the agent's connection by now (the
	// doctor's CONNECT was acknowledged after the broker acted on it).
	select {
	case err := <-lost:
		t.Fatalf("the agent's session was taken over: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if !agent.IsConnectionOpen() {
		t.Fatal("the agent was disconnected")
	}
}

// TestBrokerCredentials runs a private Mosquitto with a password file and
// an ACL: wrong or missing credentials and a forbidden topic are each
// explained.
func TestBrokerCredentials(t *testing.T) {
	t.Parallel()
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		testenv.Missing(t, "mosquitto_passwd: %v", err)
		return
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pwFile, aclFile := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	if out, err := exec.Command(passwd, "-c", "-b", pwFile, "plant", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	if out, err := exec.Command(passwd, "-b", pwFile, "gateway", "gw").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	if err := os.WriteFile(aclFile, []byte("user plant\ntopic read allowed/#\n\nuser gateway\ntopic write #\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pwFile, 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	testenv.StartMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\n", port, pwFile, aclFile))
	if err := testenv.WaitTCP(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	publishRetained(t, url, "gateway", "gw", "allowed/a/b", "1")
	publishRetained(t, url, "gateway", "gw", "secret/a/b", "2")
	secret := func(pw string) string {
		f := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	tests := []struct {
		name   string
		broker string
		topic  string
		wants  []want
	}{
		{"right password", fmt.Sprintf("  url: %s\n  username: plant\n  password_file: %s", url, secret("s3cret")), "allowed/{a}/{b}", []want{
			{name: "broker.mqtt", status: OK, detail: []string{`accepted as "plant"`}},
			{name: "broker.subscribe", status: OK, detail: []string{"allowed/+/+ (QoS 1): 1 message(s)"}},
		}},
		{"wrong password", fmt.Sprintf("  url: %s\n  username: plant\n  password_file: %s", url, secret("guess")), "allowed/{a}/{b}", []want{
			{name: "broker.mqtt", status: Fail, detail: []string{`refused user "plant"`}, hint: []string{"broker.password_file"}},
			{name: "broker.subscribe", status: Skip},
		}},
		{"anonymous", "  url: " + url, "allowed/{a}/{b}", []want{
			{name: "broker.mqtt", status: Fail, detail: []string{"refused an anonymous connection"}, hint: []string{"broker.username"}},
		}},
		{"forbidden topic", fmt.Sprintf("  url: %s\n  username: plant\n  password_file: %s", url, secret("s3cret")), "secret/{a}/{b}", []want{
			{name: "broker.mqtt", status: OK},
			// Mosquitto grants the subscription and hides the messages.
			{name: "broker.subscribe", status: Warn, detail: []string{"secret/+/+ (QoS 1): 0 message(s)"}, hint: []string{`ACL hides them from user "plant"`}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep := runDoctor(t, writeConfig(t, setup{broker: tt.broker, topic: tt.topic}), 5*time.Second)
			check(t, rep, tt.wants...)
			if strings.Contains(dump(rep), "s3cret") {
				t.Error("the report shows the broker password")
			}
		})
	}
}

// TestBrokerTLS runs a private Mosquitto with mTLS whose server
// certificate expires in ten days.
func TestBrokerTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t, 10*24*time.Hour, 365*24*time.Hour)
	expiredCert, expiredKey := filepath.Join(p.dir, "old.pem"), filepath.Join(p.dir, "old-key.pem")
	p.issue(t, "old client", expiredCert, expiredKey, -48*time.Hour, true)
	other := newPKI(t, time.Hour, time.Hour) // a CA the broker does not know
	port := testenv.FreePort(t)
	mq := testenv.StartMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n", port, p.ca, p.server, p.serverKey))
	if err := testenv.WaitTCP(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("ssl://127.0.0.1:%d", port)
	publishRetained(t, mq.URL, "", "", "doctor/site1/level", "3") // over the plain listener
	tests := []struct {
		name   string
		broker string
		wants  []want
	}{
		{"mTLS, server certificate expiring", fmt.Sprintf("  url: %s\n  tls: {ca_file: %s, cert_file: %s, key_file: %s}", url, p.ca, p.client, p.clientKey), []want{
			{name: "broker.tls", status: OK, detail: []string{`certificate "server" issued by "doctor test CA", verified`}},
			{name: "broker.cert", status: Warn, detail: []string{`server certificate "server" expires in 9 day(s)`, `client certificate ` + p.client}, hint: []string{"broker's certificate must be renewed"}},
			{name: "broker.mqtt", status: OK},
			{name: "broker.subscribe", status: OK},
		}},
		{"unknown CA", fmt.Sprintf("  url: %s\n  tls: {ca_file: %s, cert_file: %s, key_file: %s}", url, other.ca, p.client, p.clientKey), []want{
			{name: "broker.tls", status: Fail, detail: []string{`issued by "doctor test CA", which is not a trusted CA`}, hint: []string{"set broker.tls.ca_file"}},
			{name: "broker.mqtt", status: Skip},
		}},
		{"no client certificate", fmt.Sprintf("  url: %s\n  tls: {ca_file: %s}", url, p.ca), []want{
			{name: "broker.tls", status: Fail, detail: []string{"closed the connection right after the TLS handshake"}, hint: []string{"requires a client certificate", "broker.tls.cert_file"}},
			{name: "broker.mqtt", status: Skip},
		}},
		{"expired client certificate", fmt.Sprintf("  url: %s\n  tls: {ca_file: %s, cert_file: %s, key_file: %s}", url, p.ca, expiredCert, expiredKey), []want{
			{name: "broker.cert", status: Fail, detail: []string{`client certificate ` + expiredCert + ` "old client" EXPIRED`}, hint: []string{"replace " + expiredCert}},
		}},
		{"plain port with TLS URL", "  url: ssl://" + strings.TrimPrefix(testenvMQTTHost(t), "tcp://") + fmt.Sprintf("\n  tls: {ca_file: %s}", p.ca), []want{
			{name: "broker.tls", status: Fail, detail: []string{"does not speak TLS"}, hint: []string{"8883"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			check(t, runDoctor(t, writeConfig(t, setup{broker: tt.broker}), 5*time.Second), tt.wants...)
		})
	}
}

func testenvMQTTHost(t *testing.T) string {
	u, _ := testenv.MQTT(t)
	return u
}

// publishRetained publishes a retained message (a gateway's last value).
func publishRetained(t *testing.T, brokerURL, user, password, topic, payload string) {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID("gw-" + testenv.RandomID(6)).SetUsername(user).SetPassword(password)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	t.Cleanup(func() {
		c := mqtt.NewClient(o)
		if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			c.Publish(topic, 1, true, "").WaitTimeout(5 * time.Second)
			c.Disconnect(100)
		}
	})
}
