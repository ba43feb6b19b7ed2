package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"onramp/lab"
	"onramp/netboot"
	"onramp/netboot/dhcp"
)

// LabNamespace is the virtual lab's network namespace; in the UI the lab is
// an interface like any NIC, named LabIface.
const (
	LabNamespace = lab.DefaultNetNS
	LabIface     = "lab"
)

// Netboot starts and stops the boot services on the interface the
// technician chose, and lists the machines that showed up. The services run
// as a child process (`onramp netboot`): inside the lab's network namespace
// for the virtual lab, on the host otherwise. Nothing is served until Start
// names an interface.
type Netboot struct {
	exe      string // this binary
	dataDir  string
	machines *Machines
	bus      *Bus
	log      *slog.Logger

	// labRunning reports whether the virtual lab (which serves netboot on
	// its own network) is up; nil = no lab.
	labRunning func() bool

	mu     sync.Mutex
	status NetbootStatus
	cancel context.CancelFunc
	done   chan struct{}
}

// NetbootStatus is what the Network step shows.
type NetbootStatus struct {
	Running   bool      `json:"running"`
	Iface     string    `json:"iface,omitempty"`
	Mode      string    `json:"mode,omitempty"`      // requested: auto | isolated | proxy
	Effective string    `json:"effective,omitempty"` // decided: isolated | proxy
	StartedAt time.Time `json:"startedAt,omitzero"`
	Error     string    `json:"error,omitempty"` // why the services stopped, in plain words
	// ByLab is true when the virtual lab runs the boot services on its
	// own network; they stop with the lab.
	ByLab bool `json:"byLab,omitempty"`
}

// StartRequest is Netboot.Start's argument.
type StartRequest struct {
	Iface        string `json:"iface"`
	Mode         string `json:"mode"`
	AllowForeign bool   `json:"allowForeign"`
}

// NewNetboot returns the service; exe is the onramp binary to run.
func NewNetboot(exe, dataDir string, machines *Machines, bus *Bus, log *slog.Logger) *Netboot {
	return &Netboot{exe: exe, dataDir: dataDir, machines: machines, bus: bus, log: log.With("component", "netboot-supervisor")}
}

// Status reports whether the boot services run, and how.
func (n *Netboot) Status() (NetbootStatus, error) {
	n.mu.Lock()
	st := n.status
	n.mu.Unlock()
	if !st.Running && n.labRunning != nil && n.labRunning() {
		return NetbootStatus{Running: true, Iface: LabIface, Mode: "isolated", Effective: "isolated", ByLab: true}, nil
	}
	return st, nil
}

// Machines lists the machines seen so far with their timelines.
func (n *Netboot) Machines() ([]MachineView, error) { return n.machines.List(), nil }

// FoundServer is a DHCP server that answered a probe.
type FoundServer struct {
	ServerID  string `json:"serverId"`
	OfferedIP string `json:"offeredIp,omitempty"`
	BootFile  string `json:"bootFile,omitempty"`
	Proxy     bool   `json:"proxy"`
	Summary   string `json:"summary"`
}

// Probe looks for DHCP servers on iface (a host NIC; the lab has none).
func (n *Netboot) Probe(iface string) ([]FoundServer, error) {
	if iface == "" || iface == LabIface {
		return []FoundServer{}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	found, err := dhcp.Probe(ctx, iface, 4*time.Second)
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", iface, err)
	}
	out := make([]FoundServer, 0, len(found))
	for _, f := range found {
		fs := FoundServer{ServerID: f.ServerID.String(), BootFile: f.BootFile, Proxy: f.Proxy(), Summary: f.String()}
		if f.OfferedIP != nil {
			fs.OfferedIP = f.OfferedIP.String()
		}
		out = append(out, fs)
	}
	return out, nil
}

// Start runs the boot services on req.Iface. It returns once the child is
// started; failures later show in Status and as "netboot:status" events.
func (n *Netboot) Start(req StartRequest) (NetbootStatus, error) {
	if req.Iface == "" {
		return NetbootStatus{}, errors.New("choose the interface cabled to the cart switch first")
	}
	if req.Mode == "" {
		req.Mode = "auto"
	}
	switch req.Mode {
	case "auto", "isolated", "proxy":
	default:
		return NetbootStatus{}, fmt.Errorf("mode %q is not one of auto, isolated, proxy", req.Mode)
	}
	if req.Iface == LabIface {
		// The lab serves Onramp's netboot on its network itself (isolated
		// mode); its machines' events reach Discover through the Lab service.
		if st, _ := n.Status(); st.ByLab {
			return st, nil
		}
		return NetbootStatus{}, errors.New("the virtual lab is not up: start it first (Network step, \"No servers here?\")")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.status.Running {
		return n.status, fmt.Errorf("already serving on %s: stop first", n.status.Iface)
	}
	dir := filepath.Join(n.dataDir, "netboot")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return NetbootStatus{}, fmt.Errorf("start netboot: %w", err)
	}
	args := []string{"netboot", "--mode", req.Mode, "--data", dir}
	name := n.exe
	args = append(args, "--iface", req.Iface)
	if req.AllowForeign {
		args = append(args, "--allow-foreign-dhcp")
	}
	// An empty plan file, so that a machine marked later (SecureBoot step:
	// enroll keys) reaches the running services, which re-read it.
	if p := filepath.Join(n.dataDir, "bootplan.json"); !exists(p) {
		if err := SaveBootPlan(p, PlanSpec{}); err != nil {
			return NetbootStatus{}, fmt.Errorf("start netboot: %w", err)
		}
	}
	for _, f := range []struct{ flag, path string }{{"--assets", "assets"}, {"--plan", "bootplan.json"}} {
		if p := filepath.Join(n.dataDir, f.path); exists(p) {
			args = append(args, f.flag, p)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 8 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return NetbootStatus{}, err
	}
	var stderr tail
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return NetbootStatus{}, fmt.Errorf("start netboot: %w", err)
	}
	n.cancel = cancel
	n.done = make(chan struct{})
	n.status = NetbootStatus{Running: true, Iface: req.Iface, Mode: req.Mode, StartedAt: time.Now().UTC()}
	n.publishLocked()
	go n.supervise(cmd, stdout, &stderr)
	return n.status, nil
}

// supervise feeds the child's events to the machine registry and records
// how it ended.
func (n *Netboot) supervise(cmd *exec.Cmd, stdout io.Reader, stderr *tail) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e netboot.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue
		}
		n.machines.Emit(e)
	}
	err := cmd.Wait()
	n.mu.Lock()
	defer n.mu.Unlock()
	stopping := n.cancel == nil
	n.status.Running = false
	if err != nil && !stopping {
		n.status.Error = "the boot services stopped: " + stderr.lastError()
	}
	n.cancel = nil
	close(n.done)
	n.publishLocked()
}

// Stop ends the boot services and waits for them to go.
func (n *Netboot) Stop() (NetbootStatus, error) {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel = nil
	n.mu.Unlock()
	if cancel == nil {
		if st, _ := n.Status(); st.ByLab {
			return st, errors.New("netboot on the virtual lab stops with the lab: stop the lab")
		}
		return n.Status()
	}
	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		return n.Status()
	}
	return n.Status()
}

// Close stops the services when the app exits.
func (n *Netboot) close() { n.Stop() }

func (n *Netboot) publishLocked() {
	if n.bus != nil {
		n.bus.Publish("netboot:status", n.status)
	}
}

// publish sends the current status (the lab calls it when it starts or stops).
func (n *Netboot) publish() {
	if n.bus != nil {
		st, _ := n.Status()
		n.bus.Publish("netboot:status", st)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// tail keeps the end of a child's stderr (JSON log lines) to explain a failure.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 16<<10 {
		t.buf = t.buf[len(t.buf)-16<<10:]
	}
	return len(p), nil
}

// lastError finds the last error message in the log lines.
func (t *tail) lastError() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		var rec struct{ Msg, Err string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg != "" {
			if rec.Err != "" {
				return rec.Msg + ": " + rec.Err
			}
			continue
		}
		return strings.TrimPrefix(l, "onramp: ")
	}
	return "unknown reason (no output)"
}
