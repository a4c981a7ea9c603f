// Package testenv gives tests their own slice of the real services on the
// machine: a fresh PostgreSQL database, an MQTT topic prefix on the shared
// broker, or a private Mosquitto with its own configuration.
//
// Services are found through environment variables (see each function).
// When a service is missing the test is skipped, except when CI is set:
// then it fails, so a CI run never passes by skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables that point tests at services.
const (
	// EnvPostgres is a PostgreSQL URL of a role that may create databases.
	EnvPostgres = "SM_TEST_POSTGRES"
	// EnvMQTT is the shared broker's URL, e.g. tcp://127.0.0.1:1883.
	EnvMQTT = "SM_TEST_MQTT"
)

const (
	defaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	defaultMQTT     = "tcp://127.0.0.1:1883"
)

// Missing reports that a service a test needs is not there: it skips the
// test, or fails it when CI is set.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("required service missing (CI is set, so this fails instead of skipping): %s", msg)
	}
	t.Skipf("service missing: %s", msg)
}

// RandomID returns n random bytes as lower-case hex, for unique names.
func RandomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Postgres creates a fresh database for the test on the server named by
// SM_TEST_POSTGRES (default: postgres@127.0.0.1:5432, trust auth) and
// returns its URL. The database is dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgres)
	if admin == "" {
		admin = defaultPostgres
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		Missing(t, "PostgreSQL at %s: %v", redact(admin), err)
		return ""
	}
	defer conn.Close(context.Background())
	name := "smtest_" + RandomID(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

// MQTT returns the shared broker's URL (SM_TEST_MQTT, default
// tcp://127.0.0.1:1883) and a topic prefix of the form "smtest/<random>"
// that no other test uses. The shared broker runs with default limits, so
// tests that must not lose messages under load use StartMosquitto instead.
func MQTT(t testing.TB) (brokerURL, prefix string) {
	t.Helper()
	brokerURL = os.Getenv(EnvMQTT)
	if brokerURL == "" {
		brokerURL = defaultMQTT
	}
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvMQTT, err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 3*time.Second)
	if err != nil {
		Missing(t, "MQTT broker at %s: %v", brokerURL, err)
		return "", ""
	}
	c.Close()
	return brokerURL, "smtest/" + RandomID(6)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until addr accepts connections or the timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
