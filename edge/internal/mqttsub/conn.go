package mqttsub

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// readBufferSize is the receive buffer in front of the broker connection.
// 64 KiB holds hundreds of small PUBLISH packets, so one read system call
// serves many of them.
const readBufferSize = 64 << 10

// maxPendingWrite bounds the bytes waiting for the flusher; a writer
// beyond it waits, so a broker that stops reading stalls paho as a plain
// connection would.
const maxPendingWrite = 256 << 10

// closeFlushTimeout bounds how long Close waits for pending writes (the
// last acknowledgements and DISCONNECT) to reach the socket.
const closeFlushTimeout = 2 * time.Second

// bufferedConn batches the system calls of the broker connection, which
// profiling showed as the largest single cost of ingesting one-reading
// messages:
//
//   - Reads are served from a buffer. paho's packet reader asks for one
//     byte (the packet type), then one byte at a time for the remaining
//     length, then the body: three or more read calls per message.
//   - Writes are coalesced. paho writes every PUBACK with its own call,
//     and acknowledgements come in bursts (a batch is acknowledged after
//     its commit); a flusher goroutine writes whatever has accumulated in
//     one call, in order. A failed write closes the connection, so paho's
//     reader fails and the subscriber reconnects; a lost acknowledgement
//     is redelivered by the broker, as with any connection that drops.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	cond    *sync.Cond // pending grew, was flushed, or the conn closed
	pending []byte
	spare   []byte
	err     error // sticky write error
	closed  bool
	done    chan struct{} // the flusher has stopped
}

func newBufferedConn(conn net.Conn) *bufferedConn {
	c := &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, readBufferSize), done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.flush()
	return c
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write queues p for the flusher. It returns an earlier write's error, if
// any, and waits while maxPendingWrite bytes are queued.
func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.pending) >= maxPendingWrite {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	c.cond.Broadcast()
	return len(p), nil
}

// flush writes the pending bytes until the connection is closed and
// drained, or a write fails.
func (c *bufferedConn) flush() {
	defer close(c.done)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.pending) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.pending) == 0 {
			return
		}
		buf := c.pending
		c.pending = c.spare[:0]
		c.mu.Unlock()
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		c.spare = buf
		if err != nil {
			c.err = err
			c.pending = nil
			c.cond.Broadcast()
			c.Conn.Close()
			return
		}
		c.cond.Broadcast()
	}
}

// Close lets the pending writes go out (for at most closeFlushTimeout)
// and closes the connection.
func (c *bufferedConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	t := time.NewTimer(closeFlushTimeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
	return c.Conn.Close()
}

// openBuffered is paho's connection function for the schemes that are
// plain TCP or TLS over TCP. WebSocket URLs, and environments with a proxy
// (which paho honours from all_proxy), keep paho's own dialer: the buffer
// only matters at plant-gateway rates, which come over TCP.
func openBuffered(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	if o.Dialer != nil {
		d = *o.Dialer
	}
	if o.ConnectTimeout > 0 && (d.Timeout == 0 || o.ConnectTimeout < d.Timeout) {
		d.Timeout = o.ConnectTimeout
	}
	var (
		conn net.Conn
		err  error
	)
	switch u.Scheme {
	case "tcp", "mqtt":
		conn, err = d.Dial("tcp", u.Host)
	case "ssl", "tls", "mqtts":
		conn, err = tls.DialWithDialer(&d, "tcp", u.Host, o.TLSConfig)
	default:
		return nil, fmt.Errorf("mqtt: scheme %q has no buffered dialer", u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newBufferedConn(conn), nil
}

// useBufferedConn reports whether the broker URL is one openBuffered
// dials. A proxy in the environment leaves the connection to paho.
func useBufferedConn(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	for _, k := range []string{"all_proxy", "ALL_PROXY"} {
		if os.Getenv(k) != "" {
			return false
		}
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
		return true
	}
	return false
}
