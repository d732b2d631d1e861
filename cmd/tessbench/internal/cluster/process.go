package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is one server process that this package started.
type process struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{} // closed once the process has been waited for
	err    error         // Wait's result; read only after exited is closed
}

// startProcess starts bin with args in its own process group, with stdout
// and stderr appended to logPath.
func startProcess(bin string, args []string, logPath string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: open log: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group, so that Stop reaches any child it forks and a
		// terminal's Ctrl-C reaches only tessbench, which then stops it.
		Setpgid: true,
		// If tessbench dies without stopping it, the kernel kills it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cluster: start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, log: f, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.exited)
	}()
	return p, nil
}

// pid is the process's ID, which is also its process group's ID.
func (p *process) pid() int { return p.cmd.Process.Pid }

// running reports whether the process has not been waited for yet.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process's group, then SIGKILL if it has not
// exited within grace, and waits for it.
func (p *process) stop(grace time.Duration) error {
	if !p.running() {
		return nil
	}
	if err := p.signalGroup(syscall.SIGTERM); err != nil {
		return err
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
	}
	if err := p.signalGroup(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.exited
	return nil
}

// signalGroup signals the process group led by our child. Before the child
// is waited for its PID cannot be reused, so the group is ours.
func (p *process) signalGroup(sig syscall.Signal) error {
	if !p.running() {
		return nil
	}
	err := syscall.Kill(-p.pid(), sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("cluster: signal %s to group %d: %w", sig, p.pid(), err)
	}
	return nil
}

// tail returns the last n bytes of the file at path, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
