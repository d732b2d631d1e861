package proccluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
)

// EnsureEtcd returns the path of the etcd binary bin. When bin is the plain
// name "etcd", it is not on PATH and install is true, it installs Debian's
// etcd-server package first (apt-get, as root or through sudo -n).
func EnsureEtcd(ctx context.Context, bin string, install bool, logger *slog.Logger) (string, error) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if bin != "etcd" || !install {
		return "", fmt.Errorf("cluster: etcd binary %q not found; install Debian's etcd-server or pass --etcd-bin", bin)
	}
	logger.Info("etcd not found on PATH; installing Debian's etcd-server")
	if err := apt(ctx, "install", "-y", "--no-install-recommends", "etcd-server"); err != nil {
		logger.Info("apt-get install failed; updating the package lists and retrying", "err", err)
		if err := apt(ctx, "update"); err != nil {
			return "", fmt.Errorf("cluster: install etcd-server: %w", err)
		}
		if err := apt(ctx, "install", "-y", "--no-install-recommends", "etcd-server"); err != nil {
			return "", fmt.Errorf("cluster: install etcd-server: %w", err)
		}
	}
	for _, p := range []string{"etcd", "/usr/bin/etcd"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("cluster: etcd-server installed but no etcd binary found")
}

func apt(ctx context.Context, args ...string) error {
	name := "apt-get"
	if os.Geteuid() != 0 {
		args = append([]string{"-n", "apt-get"}, args...)
		name = "sudo"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Version returns the first line of `bin --version`, or "unknown".
func Version(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

// HasFlag reports whether `bin --help` lists flag (so a harness can pass
// Tessera's own flags only to a binary that takes them).
func HasFlag(ctx context.Context, bin, flag string) bool {
	out, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	return bytes.Contains(out, []byte(flag+" ")) || bytes.Contains(out, []byte(flag+"="))
}
