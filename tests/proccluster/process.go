package proccluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Process is one run of a node's binary that this package started.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for
	err    error         // Wait's result; read only after exited is closed
}

// startProcess starts bin with args in its own process group, with stdout
// and stderr appended to logPath, between a start and an exit marker line.
func startProcess(bin string, args []string, logPath string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("proccluster: open log: %w", err)
	}
	fmt.Fprintf(f, "=== %s: start %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group, so that a signal reaches any child it forks and a
		// terminal's Ctrl-C reaches only the harness, which then stops it.
		Setpgid: true,
		// If the harness dies without stopping it, the kernel kills it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("proccluster: start %s: %w", bin, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(f, "=== %s: pid %d exited: %v\n", time.Now().Format(time.RFC3339Nano), cmd.Process.Pid, p.err)
		_ = f.Close()
		close(p.exited)
	}()
	return p, nil
}

// PID is the process's ID, which is also its process group's ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.exited }

// Err is the process's exit error (nil for exit status 0); valid after Done.
func (p *Process) Err() error {
	<-p.exited
	return p.err
}

// ExitCode is the exit status (-1 if a signal ended it); valid after Done.
func (p *Process) ExitCode() int {
	<-p.exited
	return p.cmd.ProcessState.ExitCode()
}

// Running reports whether the process has not been waited for yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Wait waits up to timeout for the process to exit.
func (p *Process) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
		return fmt.Errorf("proccluster: pid %d still running after %v", p.PID(), timeout)
	}
}

// stop sends SIGTERM to the process's group, then SIGKILL if it has not
// exited within grace, and waits for it.
func (p *Process) stop(grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if p.Wait(grace) == nil {
		return nil
	}
	return p.kill()
}

// kill sends SIGKILL to the group (a stopped process dies of it too) and
// waits for the process.
func (p *Process) kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.exited
	return nil
}

// Signal signals the process group led by the process. Before the process
// is waited for its PID cannot be reused, so the group is ours.
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	err := syscall.Kill(-p.PID(), sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("proccluster: signal %s to group %d: %w", sig, p.PID(), err)
	}
	return nil
}

// Tail returns about the last n bytes of the file at path, from a line
// start, for error messages and failed tests' logs.
func Tail(path string, n int64) string {
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
	if off > 0 {
		if i := strings.IndexByte(string(b), '\n'); i >= 0 {
			b = b[i+1:]
		}
		return "...\n" + string(b)
	}
	return string(b)
}
