package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGCluster is a private PostgreSQL cluster owned by one test, started
// from the server binaries installed on the machine (initdb and pg_ctl
// under /usr/lib/postgresql/<version>/bin). Unlike Postgres, which gives a
// database on the shared server, a PGCluster may be stopped and started
// (a database restart) without disturbing other tests.
type PGCluster struct {
	// URL is the connection URL of the database "postgres" as the
	// superuser "postgres" (trust authentication, loopback only).
	URL  string
	Port int
	// Dir holds the data directory, the socket and the server log.
	Dir string

	t      testing.TB
	bin    string
	runAs  string // OS user to run the server as, "" for the current one
	dataD  string
	logF   string
	mu     sync.Mutex
	closed bool
}

// StartPostgresCluster creates and starts a private cluster on a free
// port and removes it when the test ends. When the test runs as root, the
// cluster runs as the OS user "postgres" (PostgreSQL refuses to run as
// root). It skips (or fails under CI) when no server binaries are
// installed.
func StartPostgresCluster(t testing.TB) *PGCluster {
	t.Helper()
	bin := postgresBinDir()
	if bin == "" {
		Missing(t, "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): apt-get install -y postgresql")
		return nil
	}
	c := &PGCluster{t: t, bin: bin}
	if os.Geteuid() == 0 {
		c.runAs = "postgres"
	}
	dir, err := os.MkdirTemp("", "smtest-pg-")
	if err != nil {
		t.Fatalf("create cluster directory: %v", err)
	}
	c.Dir = dir
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if c.runAs != "" {
		u, err := user.Lookup(c.runAs)
		if err != nil {
			Missing(t, "OS user %q to run PostgreSQL as: %v", c.runAs, err)
			return nil
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("chown cluster directory: %v", err)
		}
	}
	c.dataD = filepath.Join(dir, "data")
	c.logF = filepath.Join(dir, "server.log")
	c.Port = FreePort(t)
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	if out, err := c.run("initdb", "-D", c.dataD, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\nmax_connections = 100\n", c.Port, dir)
	f, err := os.OpenFile(filepath.Join(c.dataD, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open postgresql.conf: %v", err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("write postgresql.conf: %v", err)
	}
	c.Start()
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.closed = true
		_, _ = c.run("pg_ctl", "-D", c.dataD, "-m", "immediate", "-w", "-t", "30", "stop")
	})
	return c
}

// Start starts the server (after Stop) and waits until it accepts
// connections.
func (c *PGCluster) Start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, err := c.run("pg_ctl", "-D", c.dataD, "-l", c.logF, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(c.logF)
		c.t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.URL)
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return
		}
		cancel()
		if time.Now().After(deadline) {
			c.t.Fatalf("private PostgreSQL on port %d does not accept connections: %v", c.Port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop shuts the server down with pg_ctl -m fast (clients are
// disconnected, open transactions rolled back) and waits until it is down.
func (c *PGCluster) Stop() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, err := c.run("pg_ctl", "-D", c.dataD, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		c.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// CreateDatabase creates a database in the cluster and returns its URL.
func (c *PGCluster) CreateDatabase(name string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		c.t.Fatalf("connect to private PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		c.t.Fatalf("create database %s: %v", name, err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, name)
}

// run runs one of the cluster's server programs, as c.runAs when set.
func (c *PGCluster) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, prog)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// postgresBinDir returns the newest /usr/lib/postgresql/<version>/bin that
// has initdb and pg_ctl, or "".
func postgresBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	return ""
}
