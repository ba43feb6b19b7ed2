// Package lab is Onramp's virtual lab: QEMU machines with real firmware
// (OVMF for UEFI, with SecureBoot in setup mode, with vendor (Microsoft) keys
// or with site keys; SeaBIOS for BIOS), swtpm TPM 2.0 devices, and a private
// network namespace whose bridge plays the cart switch. Onramp's own netboot
// (DHCP RFC 2131 + PXE RFC 4578, TFTP RFC 1350, HTTP, iPXE) serves on that
// bridge exactly as it would on a real NIC, and the guests boot a Debian
// kernel with an initramfs that runs the Talos node simulator (lab/sim).
//
// Subpackages: lab/netns (namespace, bridge, taps, router advertisements),
// lab/kit (kernel, initramfs, UKI, signing), lab/sim (the simulator).
//
// The lab runs in the foreground (Lab.Run); lab.json in the data directory
// tells `onramp lab status` and `onramp lab down` what is running.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"onramp/lab/kit"
	"onramp/lab/netns"
)

// DefaultNetNS is the namespace `onramp lab up` uses.
const DefaultNetNS = "onramp-lab"

// NetbootEnv tells a netboot server where to serve.
type NetbootEnv struct {
	NetNS     string // run inside this namespace
	Iface     string // the lab bridge, e.g. br0
	ServerIP  net.IP // the bridge's address, 10.77.0.1
	Subnet    netip.Prefix
	AssetsDir string // holds lab/vmlinuz, lab/initramfs.gz, lab/uki.signed.efi and the iPXE dir lab/ipxe/
	IPXEDir   string // <AssetsDir>/lab/ipxe: site-signed ipxe.efi and undionly.kpxe
	PlanFile  string // boot plan JSON (Config.PlanFile), "" for none
	DataDir   string // the lab's data directory (the server may keep its own state under it)
}

// Netboot serves Onramp's netboot on the lab bridge until ctx is done. It
// must create its sockets inside env.NetNS; ExecNetboot does so by running a
// child process under `ip netns exec`.
type Netboot func(ctx context.Context, env NetbootEnv) error

// Files ExecNetboot writes in the data directory.
const (
	NetbootEventsFile = "netboot-events.jsonl" // the child's stdout: one JSON event per line
	NetbootLogFile    = "netboot.log"          // the child's stderr: JSON logs
)

// ExecNetboot returns a Netboot that runs
//
//	ip netns exec <ns> <exe> netboot --iface <br> --mode isolated \
//	    --data <data>/netboot --assets <assets> --ipxe-dir <assets>/lab/ipxe [--plan <plan>] [extra...]
//
// as a child process, stopped with SIGINT when ctx is done, with its stdout
// (events) and stderr (logs) appended to NetbootEventsFile and
// NetbootLogFile in the data directory. exe must be an absolute path
// (os.Executable()): /proc/self/exe would name ip(8).
func ExecNetboot(exe string, extra ...string) Netboot {
	return func(ctx context.Context, env NetbootEnv) error {
		args := []string{exe, "netboot",
			"--iface", env.Iface,
			"--mode", "isolated",
			"--data", filepath.Join(env.DataDir, "netboot"),
			"--assets", env.AssetsDir,
			"--ipxe-dir", env.IPXEDir,
		}
		if env.PlanFile != "" {
			args = append(args, "--plan", env.PlanFile)
		}
		args = append(args, extra...)
		events, err := os.OpenFile(filepath.Join(env.DataDir, NetbootEventsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("run netboot: %w", err)
		}
		defer events.Close()
		logs, err := os.OpenFile(filepath.Join(env.DataDir, NetbootLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("run netboot: %w", err)
		}
		defer logs.Close()
		cmd := netns.Command(ctx, env.NetNS, args...)
		cmd.Stdout, cmd.Stderr = events, logs
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Run(); err != nil && ctx.Err() == nil {
			return fmt.Errorf("run netboot %s: %w (see %s)", strings.Join(args, " "), err, logs.Name())
		}
		return nil
	}
}

// Config configures a lab.
type Config struct {
	DataDir   string    // required: lab.json, machines/<name>/, assets/
	CacheDir  string    // downloads and built artefacts; default <DataDir>/cache
	NetNS     string    // default DefaultNetNS
	Machines  []Machine // required
	Netboot   Netboot   // nil: no netboot server (machines get no answer)
	Simulator string    // talossim binary for the initramfs; "" for none
	// PlanFile is where Run writes the boot plan (PlanJSON) handed to the
	// netboot server; default <DataDir>/plan.json.
	PlanFile string
	// Kit overrides guest kit options (CacheDir and Simulator are set from above).
	Kit kit.Options
	Log *slog.Logger
}

// Lab is a running virtual lab.
type Lab struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	state State

	// Ready is closed once the network and guests are started.
	Ready chan struct{}
}

// New returns a lab for cfg.
func New(cfg Config) (*Lab, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("new lab: no data dir")
	}
	if len(cfg.Machines) == 0 {
		return nil, errors.New("new lab: no machines")
	}
	if len(cfg.Machines) > 200 {
		return nil, errors.New("new lab: at most 200 machines")
	}
	seen := map[string]bool{}
	for _, m := range cfg.Machines {
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("new lab: %w", err)
		}
		if seen[m.Name] || seen[m.MAC] {
			return nil, fmt.Errorf("new lab: duplicate machine name or MAC %s %s", m.Name, m.MAC)
		}
		seen[m.Name], seen[m.MAC] = true, true
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("new lab: %w", err)
	}
	cfg.DataDir = abs
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(cfg.DataDir, "cache")
	}
	if cfg.NetNS == "" {
		cfg.NetNS = DefaultNetNS
	}
	if cfg.PlanFile == "" {
		cfg.PlanFile = filepath.Join(cfg.DataDir, "plan.json")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Log = log
	return &Lab{cfg: cfg, log: log.With("component", "lab"), Ready: make(chan struct{})}, nil
}

// AssetsDir is where the lab installs what it serves.
func (l *Lab) AssetsDir() string { return filepath.Join(l.cfg.DataDir, "assets") }

// Run builds the guest kit, the network and the machines, serves netboot,
// and blocks until ctx is done; then it stops everything and removes the
// namespace. Leftovers of a crashed run with the same namespace are removed
// first. A machine whose QEMU exits is recorded as failed; the lab goes on.
// The netboot server exiting with an error ends the lab.
func (l *Lab) Run(ctx context.Context) error {
	cfg := l.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("run lab: %w", err)
	}
	if prev, err := ReadState(cfg.DataDir); err == nil && prev.Running && prev.PID != os.Getpid() {
		return fmt.Errorf("run lab: a lab is already running from %s (pid %d); stop it or run `onramp lab down`", cfg.DataDir, prev.PID)
	}
	ko := cfg.Kit
	ko.CacheDir, ko.Simulator = cfg.CacheDir, cfg.Simulator
	start := time.Now()
	assets, err := kit.Prepare(ctx, ko)
	if err != nil {
		return fmt.Errorf("run lab: %w", err)
	}
	if err := assets.Install(l.AssetsDir()); err != nil {
		return fmt.Errorf("run lab: %w", err)
	}
	plan, err := PlanJSON(cfg.Machines)
	if err != nil {
		return fmt.Errorf("run lab: %w", err)
	}
	if err := os.WriteFile(cfg.PlanFile, plan, 0o644); err != nil {
		return fmt.Errorf("run lab: %w", err)
	}
	l.log.Info("guest kit ready", "kernel", assets.Kernel.Package, "took", time.Since(start).Round(time.Millisecond))

	var taps []string
	l.state = State{
		PID: os.Getpid(), Running: true, Started: time.Now().UTC(),
		NetNS: cfg.NetNS, Bridge: netns.DefaultBridge, ServerIP: netns.DefaultIPv4.Addr().String(),
		Assets: l.AssetsDir(),
	}
	for i, m := range cfg.Machines {
		tap := fmt.Sprintf("tap%d", i)
		taps = append(taps, tap)
		l.state.Machines = append(l.state.Machines, MachineState{Machine: m, Dir: filepath.Join(cfg.DataDir, "machines", m.Name), Tap: tap})
	}
	if err := netns.Create(ctx, netns.Config{Name: cfg.NetNS, Taps: taps}); err != nil {
		return fmt.Errorf("run lab: %w", err)
	}
	defer func() {
		if err := netns.Destroy(context.WithoutCancel(ctx), cfg.NetNS); err != nil {
			l.log.Error("remove lab namespace", "err", err)
		}
		_ = os.RemoveAll(RuntimeDir(cfg.NetNS))
		l.mu.Lock()
		l.state.Running = false
		_ = WriteState(cfg.DataDir, &l.state)
		l.mu.Unlock()
	}()
	if err := l.saveState(); err != nil {
		return fmt.Errorf("run lab: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	ra := &netns.Advertiser{NetNS: cfg.NetNS, Iface: netns.DefaultBridge, Prefix: netip.MustParsePrefix("fd77::/64"), Log: cfg.Log}
	g.Go(func() error {
		// Without RAs guests boot, only ~13 s slower per iPXE stage.
		if err := ra.Run(gctx); err != nil {
			l.log.Warn("no router advertisements on the lab bridge", "err", err)
		}
		return nil
	})
	if cfg.Netboot != nil {
		env := NetbootEnv{
			NetNS: cfg.NetNS, Iface: netns.DefaultBridge,
			ServerIP: net.IP(netns.DefaultIPv4.Addr().AsSlice()), Subnet: netns.DefaultIPv4.Masked(),
			AssetsDir: l.AssetsDir(), IPXEDir: filepath.Join(l.AssetsDir(), kit.AssetIPXEDir),
			PlanFile: cfg.PlanFile, DataDir: cfg.DataDir,
		}
		g.Go(func() error {
			err := cfg.Netboot(gctx, env)
			if err == nil && gctx.Err() == nil {
				err = errors.New("netboot server exited")
			}
			return err
		})
		if err := waitUDPPort(gctx, cfg.NetNS, 67, 20*time.Second); err != nil {
			l.log.Warn("netboot not listening on UDP 67 yet; starting machines anyway", "err", err)
		}
	}
	for i := range l.state.Machines {
		ms := l.state.Machines[i]
		vm := &VM{Machine: ms.Machine, Dir: ms.Dir, NetNS: cfg.NetNS, Tap: ms.Tap, Log: cfg.Log}
		g.Go(func() error {
			err := vm.Run(gctx)
			if err != nil {
				l.log.Warn("machine exited", "machine", ms.Name, "err", err)
				l.mu.Lock()
				l.state.Machines[i].Exit = oneLine(err.Error())
				_ = WriteState(cfg.DataDir, &l.state)
				l.mu.Unlock()
			}
			return nil
		})
	}
	close(l.Ready)
	return g.Wait()
}

func (l *Lab) saveState() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return WriteState(l.cfg.DataDir, &l.state)
}

// State returns a copy of the lab's state.
func (l *Lab) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state
	s.Machines = append([]MachineState(nil), l.state.Machines...)
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// waitUDPPort waits until something in namespace ns listens on UDP port, by
// reading /proc/thread-self/net/udp from a thread inside the namespace.
func waitUDPPort(ctx context.Context, ns string, port int, max time.Duration) error {
	deadline := time.Now().Add(max)
	want := fmt.Sprintf(":%04X ", port)
	for time.Now().Before(deadline) {
		var found bool
		err := netns.Do(ns, func() error {
			b, err := os.ReadFile("/proc/thread-self/net/udp")
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(b), "\n")[1:] {
				f := strings.Fields(line)
				if len(f) > 1 && strings.HasSuffix(f[1]+" ", want) {
					found = true
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if found {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing on udp port %d after %s", port, max)
}

// Down stops a lab recorded in dataDir: if its `lab up` process still runs
// it gets SIGINT and up to 20 s to tear down; then whatever is left in the
// namespace (a crashed run's QEMU, swtpm and netboot processes) is ended and
// the namespace removed. Without a lab.json, Down removes namespace ns.
func Down(ctx context.Context, dataDir, ns string) error {
	s, err := ReadState(dataDir)
	if err != nil && !errors.Is(err, ErrNoLab) {
		return err
	}
	if s != nil {
		if s.NetNS != "" {
			ns = s.NetNS
		}
		if s.Running && s.PID != os.Getpid() {
			if p, err := os.FindProcess(s.PID); err == nil {
				_ = p.Signal(os.Interrupt)
			}
			for i := 0; i < 200 && processAlive(s.PID); i++ {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
	if ns == "" {
		ns = DefaultNetNS
	}
	if err := netns.Destroy(ctx, ns); err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	if err := os.RemoveAll(RuntimeDir(ns)); err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	if s != nil && s.Running {
		s.Running = false
		_ = WriteState(dataDir, s)
	}
	return nil
}
