package robustness

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer answers every line with itself until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line over c and waits up to d for it to come back.
func roundTrip(c net.Conn, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("garbled echo")
	}
	return nil
}

func TestConnOwner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The accepting side asks who holds the other end.
	pid, err := ConnOwner(s.RemoteAddr(), s.LocalAddr(), []int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() {
		t.Fatalf("owner %d, want this process (%d)", pid, os.Getpid())
	}
	if _, err := ConnOwner(s.RemoteAddr(), s.LocalAddr(), []int{1 << 30}); err == nil {
		t.Fatal("found an owner among PIDs that do not hold the socket")
	}
}

// TestNetworkIsolate: the test process plays node 0, dialing node 1's
// proxy. Isolating either node cuts the open connection and black-holes
// new ones; Heal lets new ones through.
func TestNetworkIsolate(t *testing.T) {
	n := NewNetwork(slog.New(slog.DiscardHandler), func() map[int]int { return map[int]int{os.Getpid(): 0} })
	defer n.Close()
	addr, err := n.Listen(1, "127.0.0.1", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, isolated := range []int{0, 1} {
		c := dial()
		if err := roundTrip(c, 5*time.Second); err != nil {
			t.Fatalf("before isolating node %d: %v", isolated, err)
		}
		n.Isolate(isolated)
		if err := roundTrip(c, 5*time.Second); err == nil {
			t.Fatalf("open connection still works with node %d isolated", isolated)
		}
		var ne net.Error
		if err := roundTrip(dial(), 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("new connection with node %d isolated: %v, want a timeout (black hole)", isolated, err)
		}
		n.Heal()
		if err := roundTrip(dial(), 5*time.Second); err != nil {
			t.Fatalf("after healing node %d: %v", isolated, err)
		}
	}
}
