// Package netns builds the virtual lab's network: one Linux network namespace
// holding a bridge (the "cart switch") and one tap device per QEMU guest.
//
// Nothing here touches the host's interfaces: every link is created inside the
// namespace, so the lab's DHCP server, the guests' PXE broadcasts and router
// advertisements never leave it. The namespace is a named one
// (/run/netns/NAME, ip-netns(8)) so other processes (QEMU, the netboot child,
// a second `onramp lab status`) can join it by name, and so a crashed run's
// leftovers can be found and removed by the next Create or Destroy.
//
// The bridge has STP off and forward delay 0 so that the first DHCPDISCOVER a
// firmware sends is forwarded at once (PXE ROMs retry only a few times). It
// carries an IPv4 address for the lab subnet and an IPv6 ULA (added with
// nodad, RFC 4862 section 5.4 duplicate address detection would delay it) from
// which router advertisements (RFC 4861) are sent: iPXE waits ~13 s per stage
// for IPv6 autoconfiguration unless it sees one.
//
// Do runs a function with the calling goroutine's OS thread switched into the
// namespace (setns(2)); sockets created there stay in the namespace.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes the lab network. Zero fields take the defaults below.
type Config struct {
	Name   string       // namespace name, e.g. "onramp-lab"
	Bridge string       // bridge name inside the namespace, default "br0"
	IPv4   netip.Prefix // bridge address, default 10.77.0.1/24
	IPv6   netip.Prefix // bridge address, default fd77::1/64
	Taps   []string     // tap devices to create and enslave to the bridge
}

// Defaults used when Config fields are zero.
var (
	DefaultBridge = "br0"
	DefaultIPv4   = netip.MustParsePrefix("10.77.0.1/24")
	DefaultIPv6   = netip.MustParsePrefix("fd77::1/64")
)

func (c *Config) setDefaults() {
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if !c.IPv4.IsValid() {
		c.IPv4 = DefaultIPv4
	}
	if !c.IPv6.IsValid() {
		c.IPv6 = DefaultIPv6
	}
}

// ip runs ip(8) and returns its combined output in the error.
func ip(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Exists reports whether the named namespace exists (/run/netns/NAME).
func Exists(name string) bool {
	_, err := os.Stat(Path(name))
	return err == nil
}

// Path is the bind-mount file of a named namespace.
func Path(name string) string { return filepath.Join("/run/netns", name) }

// Create removes any leftover namespace with the same name (a crashed run),
// then creates the namespace, the bridge with its addresses, and the taps.
// On error everything created is removed again.
func Create(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if cfg.Name == "" {
		return errors.New("create lab namespace: empty name")
	}
	if err := Destroy(ctx, cfg.Name); err != nil {
		return fmt.Errorf("create lab namespace %s: remove leftovers: %w", cfg.Name, err)
	}
	n := cfg.Name
	steps := [][]string{
		{"netns", "add", n},
		{"-n", n, "link", "set", "lo", "up"},
		{"-n", n, "link", "add", cfg.Bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"-n", n, "addr", "add", cfg.IPv4.String(), "dev", cfg.Bridge},
		{"-n", n, "-6", "addr", "add", cfg.IPv6.String(), "dev", cfg.Bridge, "nodad"},
		// A veth pair whose one end is a bridge port keeps the bridge's
		// carrier up before any guest has opened its tap, so servers that
		// refuse interfaces without IFF_RUNNING (Kea) can start first. (No
		// dummy: some kernels lack it.) The far end gets no addresses.
		{"-n", n, "link", "add", "keep0", "type", "veth", "peer", "name", "keep1"},
		{"-n", n, "link", "set", "keep1", "addrgenmode", "none"},
		{"-n", n, "link", "set", "keep1", "up"},
		{"-n", n, "link", "set", "keep0", "addrgenmode", "none"},
		{"-n", n, "link", "set", "keep0", "master", cfg.Bridge, "up"},
		{"-n", n, "link", "set", cfg.Bridge, "up"},
	}
	for _, tap := range cfg.Taps {
		steps = append(steps,
			[]string{"-n", n, "tuntap", "add", "dev", tap, "mode", "tap"},
			[]string{"-n", n, "link", "set", tap, "master", cfg.Bridge, "up"},
		)
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			// Cleanup must run even when ctx is already cancelled.
			_ = Destroy(context.WithoutCancel(ctx), n)
			return fmt.Errorf("create lab namespace %s: %w", n, err)
		}
	}
	return nil
}

// Destroy ends the processes left running inside the namespace (a crashed
// lab's QEMU, swtpm and netboot children: SIGTERM, then SIGKILL after 5 s,
// each by PID as `ip netns pids` lists them) and removes the namespace and,
// with it, the bridge and taps. Destroying a namespace that does not exist is
// not an error.
func Destroy(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("destroy lab namespace: empty name")
	}
	if !Exists(name) {
		return nil
	}
	if err := terminate(ctx, name); err != nil {
		return fmt.Errorf("destroy lab namespace %s: %w", name, err)
	}
	if err := ip(ctx, "netns", "del", name); err != nil {
		if !Exists(name) {
			return nil
		}
		return fmt.Errorf("destroy lab namespace %s: %w", name, err)
	}
	return nil
}

// Do runs fn on a locked OS thread switched into the named namespace and
// switches the thread back afterwards. Sockets fn creates belong to the
// namespace for their whole life; goroutines fn starts do NOT run in the
// namespace (they may be scheduled on other threads). If the thread cannot
// be switched back it is left locked, so the Go runtime discards it.
func Do(name string, fn func() error) error {
	target, err := os.Open(Path(name))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace %s: %w", name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Keep the thread locked: it dies with this goroutine instead of
		// running other goroutines in the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("leave namespace %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Command returns a command that runs argv inside the named namespace via
// `ip netns exec`. argv[0] must be an absolute path or a name on PATH;
// /proc/self/exe would name ip(8) itself, so resolve os.Executable first.
func Command(ctx context.Context, name string, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", name}, argv...)...)
}

// Pids lists the processes running inside the named namespace.
func Pids(ctx context.Context, name string) ([]int, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %w", name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// terminate ends every process inside the namespace.
func terminate(ctx context.Context, name string) error {
	pids, err := Pids(ctx, name)
	if err != nil || len(pids) == 0 {
		return err
	}
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		alive := 0
		for _, pid := range pids {
			if unix.Kill(pid, 0) == nil {
				alive++
			}
		}
		if alive == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	return nil
}
