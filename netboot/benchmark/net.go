package benchmark

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Addresses of the bench network: the server namespace's bridge holds
// ServerIP/16, the load generator's namespace ClientIP/16. Onramp and the
// peers serve the same /16 (pool .0.100 – .255.254).
const (
	ServerIP  = "10.77.0.1"
	ClientIP  = "10.77.0.2"
	prefixLen = 16
	PoolStart = "10.77.0.100"
	PoolEnd   = "10.77.255.254"
)

// Net is the bench topology: namespace S (servers) with a bridge, namespace
// C (load generators) on one veth into the bridge, and optional machine
// namespaces (rack boot), one per simulated machine, each on its own veth.
// Every name starts with the prefix given to NewNet (default "obb") and a
// random tag; Close removes everything.
type Net struct {
	Tag       string
	S, C      string // namespaces
	Bridge    string // in S: the interface the servers are bound to
	ClientIf  string // in C
	mu        sync.Mutex
	machines  []string // namespaces of machines
	namespace []string
}

// NewNet builds the two namespaces and the bridge. prefix starts every
// namespace and link name ("" = "obb"); at most 3 characters, so the
// longest link name stays within IFNAMSIZ.
func NewNet(ctx context.Context, prefix string) (*Net, error) {
	if prefix == "" {
		prefix = "obb"
	}
	if len(prefix) > 3 {
		return nil, fmt.Errorf("create bench network: prefix %q longer than 3 characters", prefix)
	}
	b := make([]byte, 2)
	rand.Read(b)
	tag := prefix + hex.EncodeToString(b)
	n := &Net{Tag: tag, S: tag + "s", C: tag + "c", Bridge: tag + "br", ClientIf: tag + "c"}
	cmds := [][]string{
		{"netns", "add", n.S},
		{"netns", "add", n.C},
	}
	for _, c := range cmds {
		if err := ipCmd(ctx, c...); err != nil {
			n.Close()
			return nil, err
		}
		n.namespace = append(n.namespace, c[2])
	}
	steps := []struct {
		ns    string
		lines []string
	}{
		{"", []string{fmt.Sprintf("link add %sp netns %s type veth peer name %s netns %s", tag, n.S, n.ClientIf, n.C)}},
		{n.S, []string{
			"link set lo up",
			fmt.Sprintf("link add %s type bridge stp_state 0 forward_delay 0", n.Bridge),
			fmt.Sprintf("link set %sp master %s", tag, n.Bridge),
			fmt.Sprintf("addr add %s/%d dev %s", ServerIP, prefixLen, n.Bridge),
			fmt.Sprintf("link set %s up", n.Bridge),
			fmt.Sprintf("link set %sp up", tag),
		}},
		{n.C, []string{
			"link set lo up",
			fmt.Sprintf("addr add %s/%d dev %s", ClientIP, prefixLen, n.ClientIf),
			fmt.Sprintf("link set %s up", n.ClientIf),
		}},
	}
	for _, st := range steps {
		if err := ipBatch(ctx, st.ns, st.lines); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// AddMachines adds count machine namespaces, each with interface "m0" on a
// veth whose peer is a port of the bridge, and returns their names.
func (n *Net) AddMachines(ctx context.Context, count int) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	first := len(n.machines)
	var names, batch []string
	for i := first; i < first+count; i++ {
		ns := fmt.Sprintf("%sm%d", n.Tag, i)
		names = append(names, ns)
		batch = append(batch, "netns add "+ns)
	}
	err := ipBatch(ctx, "", batch)
	n.machines = append(n.machines, names...) // removed by Close even on error
	n.namespace = append(n.namespace, names...)
	if err != nil {
		return nil, err
	}
	var links, ports []string
	for i, ns := range names {
		port := fmt.Sprintf("%sq%d", n.Tag, first+i)
		links = append(links, fmt.Sprintf("link add %s netns %s type veth peer name m0 netns %s", port, n.S, ns))
		ports = append(ports, fmt.Sprintf("link set %s master %s", port, n.Bridge), fmt.Sprintf("link set %s up", port))
	}
	if err := ipBatch(ctx, "", links); err != nil {
		return nil, err
	}
	if err := ipBatch(ctx, n.S, ports); err != nil {
		return nil, err
	}
	for _, ns := range names {
		if err := ipBatch(ctx, ns, []string{"link set lo up", "link set m0 up"}); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// Close deletes every namespace it made (their veths go with them). It
// uses a fresh context: it runs on the way out, also after a SIGINT.
func (n *Net) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var batch []string
	for _, ns := range n.namespace {
		batch = append(batch, "netns del "+ns)
	}
	if len(batch) > 0 {
		ipBatchForce(ctx, batch)
	}
	n.namespace, n.machines = nil, nil
}

func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipBatch runs lines with one ip process, in namespace ns ("" = this one).
func ipBatch(ctx context.Context, ns string, lines []string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -batch (%d commands, first %q): %w: %s", len(lines), lines[0], err, bytes.TrimSpace(out))
	}
	return nil
}

func ipBatchForce(ctx context.Context, lines []string) {
	cmd := exec.CommandContext(ctx, "ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	cmd.Run()
}

// Proc is a long-running process started in a namespace (a server under
// test). Its output goes to a log file.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// StartProc runs argv in namespace ns with extra environment; stdout and
// stderr go to logPath. `ip netns exec` execs the command in place, so
// Pid is the server's own PID.
func StartProc(name, ns, logPath string, env []string, argv ...string) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process is gone.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Tail returns the last bytes of the process's log.
func (p *Proc) Tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop sends SIGTERM, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// WaitReady polls ready every 100 ms until it returns nil, the process
// exits or timeout passes.
func (p *Proc) WaitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v\n%s", p.Name, p.err, p.Tail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s: %v\n%s", p.Name, timeout, last, p.Tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// AskRuntime asks a running `onramp netboot` for its goroutine count and
// discovery's work in progress (machines watched, one goroutine each until
// the node answers or 15 minutes pass; attempts in flight, a socket each):
// it sends SIGUSR1 and reads the "runtime" line the process logs in answer.
func (p *Proc) AskRuntime(timeout time.Duration) (runtimeLine, error) {
	count := func() (int, runtimeLine) {
		b, _ := os.ReadFile(p.log)
		lines, last := 0, runtimeLine{}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `"msg":"runtime"`) {
				continue
			}
			var rec runtimeLine
			if json.Unmarshal([]byte(line), &rec) == nil {
				lines, last = lines+1, rec
			}
		}
		return lines, last
	}
	before, _ := count()
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return runtimeLine{}, fmt.Errorf("ask %s for its goroutines: %w", p.Name, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n, last := count(); n > before {
			return last, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return runtimeLine{}, fmt.Errorf("ask %s for its goroutines: no runtime line within %s", p.Name, timeout)
}

// runtimeLine is what `onramp netboot` logs on SIGUSR1.
type runtimeLine struct {
	Goroutines       int `json:"goroutines"`
	DiscoverWatching int `json:"discover_watching"`
	DiscoverAttempts int `json:"discover_attempts"`
}

// Runtime fills s's fields that only the process itself knows.
func (s *ProcStats) Runtime(p *Proc) {
	if r, err := p.AskRuntime(5 * time.Second); err == nil {
		s.Goroutines, s.DiscoverWatching, s.DiscoverAttempts = r.Goroutines, r.DiscoverWatching, r.DiscoverAttempts
	}
}

// ProcStats is what /proc says about a process.
type ProcStats struct {
	RSSKiB  int64 `json:"rss_kib"`
	HWMKiB  int64 `json:"hwm_kib"`
	Threads int   `json:"threads"`
	FDs     int   `json:"fds"`
	// Goroutines, from the process itself (Proc.AskRuntime); 0 when it
	// could not say.
	Goroutines int `json:"goroutines"`
	// DiscoverWatching is how many of them watch a machine for Talos
	// maintenance mode: work in progress, not a leak.
	DiscoverWatching int `json:"discover_watching"`
	// DiscoverAttempts is how many connection attempts discovery has in
	// flight (at most 16, each holding a socket while it runs).
	DiscoverAttempts int `json:"discover_attempts"`
	// FDKinds counts the descriptors by what they point at ("socket",
	// "anon_inode:[eventpoll]", "pipe", "file", ...), to tell a growth apart.
	FDKinds map[string]int `json:"fd_kinds"`
}

// ReadProcStats reads /proc/PID/status and /proc/PID/fd.
func ReadProcStats(pid int) (ProcStats, error) {
	var s ProcStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read process status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSSKiB = n
		case "VmHWM":
			s.HWMKiB = n
		case "Threads":
			s.Threads = int(n)
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, fmt.Errorf("read process fds: %w", err)
	}
	s.FDs = len(ents)
	s.FDKinds = map[string]int{}
	for _, e := range ents {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		kind, _, _ := strings.Cut(link, ":[")
		if strings.HasPrefix(link, "/") {
			kind = "file"
		} else if strings.HasPrefix(link, "anon_inode:") {
			kind = link
		}
		s.FDKinds[kind]++
	}
	return s, nil
}

// nsRun runs argv in namespace ns and returns its stdout.
func nsRun(ctx context.Context, ns string, argv ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}

// fillFile writes size pseudo-random bytes (not compressible) to path.
func fillFile(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		return err
	}
	return f.Chmod(0o644)
}

var errSkip = errors.New("skipped")
