package robustness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Network is a fault-injecting TCP proxy in front of every node's peer
// port. Each node advertises its proxy's address as its peer URL, so all
// peer traffic (raft transport, forwarded requests, TSO) passes through
// the proxies. A proxy learns which node opened a connection from the
// kernel: the connecting socket's inode (/proc/net/tcp) and the process
// holding it (/proc/PID/fd), compared against the PIDs the test started.
// This needs Linux and no change to the server (docs/decisions.md).
//
// Isolate(n) cuts node n off: connections from or to it are closed, and new
// ones are accepted and then held without forwarding a byte (a black hole,
// as a partitioned network behaves) until Heal.
type Network struct {
	log *slog.Logger
	// pids returns the PID of every running node, by node index.
	pids func() map[int]int

	mu struct {
		sync.Mutex
		isolated map[int]bool
		links    map[*link]struct{}
		closed   bool
	}
	proxies []*proxy
	wg      sync.WaitGroup
}

// proxy forwards connections to one node's peer port.
type proxy struct {
	n      *Network
	node   int
	ln     net.Listener
	target string
}

// link is one proxied (or black-holed) connection.
type link struct {
	from, to int // node indexes; from is -1 when unknown
	conns    []net.Conn
}

// NewNetwork creates a Network; pids returns the running nodes' PIDs
// (PID -> node index). Add a proxy per node with Listen.
func NewNetwork(log *slog.Logger, pids func() map[int]int) *Network {
	n := &Network{log: log, pids: pids}
	n.mu.isolated = map[int]bool{}
	n.mu.links = map[*link]struct{}{}
	return n
}

// Listen starts the proxy of node (index) on a free port of host and
// returns its address; it forwards to target once SetTarget is called.
func (n *Network) Listen(node int, host, target string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("robustness: proxy listen: %w", err)
	}
	p := &proxy{n: n, node: node, ln: ln, target: target}
	n.mu.Lock()
	n.proxies = append(n.proxies, p)
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		p.serve()
	}()
	return ln.Addr().String(), nil
}

// Isolate cuts node off from every other node until Heal.
func (n *Network) Isolate(node int) {
	n.mu.Lock()
	n.mu.isolated[node] = true
	var cut []*link
	for l := range n.mu.links {
		if l.from == node || l.to == node {
			cut = append(cut, l)
			delete(n.mu.links, l)
		}
	}
	n.mu.Unlock()
	for _, l := range cut {
		l.close()
	}
	n.log.Info("network: isolated", "node", node, "links cut", len(cut))
}

// Heal ends every isolation; black-holed connections are closed so that
// their owners dial again.
func (n *Network) Heal() {
	n.mu.Lock()
	n.mu.isolated = map[int]bool{}
	var holes []*link
	for l := range n.mu.links {
		if len(l.conns) == 1 {
			holes = append(holes, l)
			delete(n.mu.links, l)
		}
	}
	n.mu.Unlock()
	for _, l := range holes {
		l.close()
	}
	n.log.Info("network: healed", "black holes closed", len(holes))
}

// Close stops every proxy and closes every connection.
func (n *Network) Close() {
	n.mu.Lock()
	n.mu.closed = true
	links := n.mu.links
	n.mu.links = map[*link]struct{}{}
	proxies := n.proxies
	n.mu.Unlock()
	for _, p := range proxies {
		_ = p.ln.Close()
	}
	for l := range links {
		l.close()
	}
	n.wg.Wait()
}

func (l *link) close() {
	for _, c := range l.conns {
		_ = c.Close()
	}
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.n.wg.Add(1)
		go func() {
			defer p.n.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *proxy) handle(c net.Conn) {
	from := -1
	pids := p.n.pids()
	var candidates []int
	for pid := range pids {
		candidates = append(candidates, pid)
	}
	if pid, err := ConnOwner(c.RemoteAddr(), c.LocalAddr(), candidates); err == nil {
		from = pids[pid]
	} else {
		p.n.log.Debug("network: connection of unknown origin", "to", p.node, "err", err)
	}
	l := &link{from: from, to: p.node, conns: []net.Conn{c}}
	n := p.n
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		_ = c.Close()
		return
	}
	cut := n.mu.isolated[p.node] || (from >= 0 && n.mu.isolated[from])
	n.mu.links[l] = struct{}{}
	n.mu.Unlock()
	if cut {
		// Black hole: read and drop until someone closes the connection.
		_, _ = io.Copy(io.Discard, c)
		n.forget(l)
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		n.forget(l)
		return
	}
	n.mu.Lock()
	if _, ok := n.mu.links[l]; !ok { // cut meanwhile
		n.mu.Unlock()
		_ = up.Close()
		return
	}
	l.conns = append(l.conns, up)
	n.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	n.forget(l)
	<-done
}

func (n *Network) forget(l *link) {
	n.mu.Lock()
	delete(n.mu.links, l)
	n.mu.Unlock()
	l.close()
}

// ConnOwner returns which of the candidate PIDs holds the TCP socket with
// local address local and remote address remote (IPv4 only): the socket's
// inode from /proc/net/tcp, then the process whose fd table holds it.
func ConnOwner(local, remote net.Addr, candidates []int) (int, error) {
	inode, err := socketInode(local, remote)
	if err != nil {
		return 0, err
	}
	want := fmt.Sprintf("socket:[%d]", inode)
	for _, pid := range candidates {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // exited meanwhile
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == want {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("robustness: no process holds socket %s -> %s", local, remote)
}

var errNoSocket = errors.New("robustness: socket not in /proc/net/tcp")

func socketInode(local, remote net.Addr) (uint64, error) {
	lh, err := procAddr(local)
	if err != nil {
		return 0, err
	}
	rh, err := procAddr(remote)
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, fmt.Errorf("robustness: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[1] != lh || fs[2] != rh {
			continue
		}
		inode, err := strconv.ParseUint(fs[9], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("robustness: /proc/net/tcp inode %q: %w", fs[9], err)
		}
		return inode, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("robustness: read /proc/net/tcp: %w", err)
	}
	return 0, fmt.Errorf("%w: %s -> %s", errNoSocket, local, remote)
}

// procAddr formats an IPv4 TCP address as /proc/net/tcp does: the address
// as a little-endian 32-bit hex word, then the port in hex.
func procAddr(a net.Addr) (string, error) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "", fmt.Errorf("robustness: %v is not a TCP address", a)
	}
	ip := ta.IP.To4()
	if ip == nil {
		return "", fmt.Errorf("robustness: %v is not IPv4", a)
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ta.Port), nil
}
