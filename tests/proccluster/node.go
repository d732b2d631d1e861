package proccluster

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"
)

// Node is one member: its fixed flags and its current process, if any.
type Node struct {
	// Index is the member's position (0-based); ID is Index+1, its place
	// in --initial-cluster (Tessera's node id).
	Index int
	ID    uint64
	Name  string
	// ClientURL and PeerURL are what the node listens on;
	// AdvertisePeerURL is what it advertises for peers (PeerURL unless a
	// proxy stands in front of it).
	ClientURL        string
	PeerURL          string
	AdvertisePeerURL string
	DataDir          string
	LogPath          string
	// Args are the node's flags, used by every start.
	Args []string
	// ClientTLS and PeerTLS are how a harness dials the node's client and
	// peer ports (nil: plaintext).
	ClientTLS, PeerTLS *tls.Config

	bin string
	log *slog.Logger

	mu   sync.Mutex
	proc *Process // nil when not running
}

// Start starts the node's process with its flags (it must not be running).
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && n.proc.Running() {
		return fmt.Errorf("proccluster: %s is already running (pid %d)", n.Name, n.proc.PID())
	}
	p, err := startProcess(n.bin, n.Args, n.LogPath)
	if err != nil {
		return err
	}
	n.proc = p
	if n.log != nil {
		n.log.Debug("started", "node", n.Name, "pid", p.PID(), "client", n.ClientURL, "log", n.LogPath)
	}
	return nil
}

// Process returns the node's current process (nil if it is not started or
// was reaped by Kill or Stop). It may have exited on its own.
func (n *Node) Process() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// PID is the current process's ID (0 if none).
func (n *Node) PID() int {
	if p := n.Process(); p != nil {
		return p.PID()
	}
	return 0
}

// Exited returns an error if the node is not running: never started,
// killed, or exited on its own.
func (n *Node) Exited() error {
	p := n.Process()
	switch {
	case p == nil:
		return fmt.Errorf("%s is not running", n.Name)
	case !p.Running():
		return fmt.Errorf("%s exited: %v (log %s)", n.Name, p.err, n.LogPath)
	}
	return nil
}

// Signal sends sig to the node's process group if it runs, and returns the
// process (nil if there is none).
func (n *Node) Signal(sig syscall.Signal) (*Process, error) {
	p := n.Process()
	if p == nil {
		return nil, nil
	}
	return p, p.Signal(sig)
}

// Kill sends SIGKILL to the node's process group and reaps the process
// within timeout. Killing a node that does not run does nothing.
func (n *Node) Kill(timeout time.Duration) error {
	p := n.Process()
	if p == nil {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if err := p.Wait(timeout); err != nil {
		return fmt.Errorf("%s: not reaped after SIGKILL: %w", n.Name, err)
	}
	n.forgetExited()
	return nil
}

// Stop sends SIGTERM, then SIGKILL if the process has not exited within
// grace, and waits for it.
func (n *Node) Stop(grace time.Duration) error {
	p := n.Process()
	if p == nil {
		return nil
	}
	if err := p.stop(grace); err != nil {
		return err
	}
	n.forgetExited()
	return nil
}

// Forget drops the node's process once it has exited (after a Signal the
// caller waited on), so that Start may run it again.
func (n *Node) Forget() { n.forgetExited() }

func (n *Node) forgetExited() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.Running() {
		n.proc = nil
	}
}
