package mqttsub

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// pair returns a bufferedConn dialled to a loopback listener and the
// accepted server side.
func pair(t *testing.T) (*bufferedConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	c := newBufferedConn(raw)
	t.Cleanup(func() { c.Close(); srv.Close() })
	return c, srv
}

func TestBufferedConnWritesInOrder(t *testing.T) {
	c, srv := pair(t)
	const n = 20000
	got := make(chan error, 1)
	go func() {
		var b [4]byte
		for i := range uint32(n) {
			if _, err := io.ReadFull(srv, b[:]); err != nil {
				got <- err
				return
			}
			if v := binary.BigEndian.Uint32(b[:]); v != i {
				got <- errors.New("out of order")
				return
			}
		}
		got <- nil
	}()
	var b [4]byte
	for i := range uint32(n) {
		binary.BigEndian.PutUint32(b[:], i)
		if _, err := c.Write(b[:]); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func TestBufferedConnCloseFlushesPending(t *testing.T) {
	c, srv := pair(t)
	want := bytes.Repeat([]byte("puback"), 50000) // more than maxPendingWrite
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(srv)
		done <- b
	}()
	for i := 0; i < len(want); i += 6 {
		if _, err := c.Write(want[i : i+6]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := <-done; !bytes.Equal(got, want) {
		t.Fatalf("server read %d bytes, want %d", len(got), len(want))
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
}

// A packet reader asking for one byte at a time gets the stream intact.
func TestBufferedConnReadsByteWise(t *testing.T) {
	c, srv := pair(t)
	want := make([]byte, 100000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() { srv.Write(want); srv.Close() }()
	var got []byte
	b := make([]byte, 1)
	for {
		_, err := io.ReadFull(c, b)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		got = append(got, b[0])
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d, equal prefix: %v", len(got), len(want), bytes.HasPrefix(want, got))
	}
}

// When the peer goes away, a write eventually fails and the connection
// is closed, so the reader (paho's) fails too and the client reconnects.
func TestBufferedConnWriteErrorClosesConn(t *testing.T) {
	c, srv := pair(t)
	srv.(*net.TCPConn).SetLinger(0)
	srv.Close()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write(make([]byte, 1024))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a reset connection kept succeeding")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, rerr := c.Read(make([]byte, 1)); rerr == nil {
		t.Fatal("read on a failed connection succeeded")
	}
}
