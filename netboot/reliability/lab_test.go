package reliability

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var long = flag.Bool("long", false, "run the long (soak) form: bigger counts, strict bounds; also ONRAMP_SOAK=1")

// soak reports whether the long form runs.
func soak() bool { return *long || os.Getenv("ONRAMP_SOAK") == "1" }

// pick returns short or, in the long form, long.
func pick[T any](short, long T) T {
	if soak() {
		return long
	}
	return short
}

func needRoot(t *testing.T, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, b := range append([]string{"ip"}, bins...) {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (a real peer; Debian package list in the Makefile)", b)
		}
	}
	if _, err := os.Stat("/usr/lib/ipxe/ipxe.efi"); err != nil {
		t.Skip("needs /usr/lib/ipxe/ipxe.efi (Debian: ipxe)")
	}
}

// lab: namespace S holds the bridge (the served interface, 10.77.0.1/24);
// every other namespace hangs off the bridge on a veth (10.77.0.N/24 when
// asked). Names start with "obb" and a random tag; cleanup removes them.
type lab struct {
	t      *testing.T
	tag    string
	S, br  string
	nextIP int
}

const serverIP = "10.77.0.1"

func newLab(t *testing.T) *lab {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{t: t, tag: "obb" + hex.EncodeToString(b), nextIP: 2}
	l.S = l.ns("s")
	l.br = l.tag + "br"
	nettest.Sh(t, "ip", "-n", l.S, "link", "add", l.br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	nettest.Sh(t, "ip", "-n", l.S, "addr", "add", serverIP+"/24", "dev", l.br)
	nettest.Sh(t, "ip", "-n", l.S, "link", "set", l.br, "up")
	return l
}

func (l *lab) ns(suffix string) string {
	name := l.tag + suffix
	nettest.Sh(l.t, "ip", "netns", "add", name)
	l.t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	nettest.Sh(l.t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// port adds namespace suffix on the bridge; its interface is "e0", with the
// next address of the subnet when addr is set. It returns the namespace
// and the address ("" without).
func (l *lab) port(suffix string, addr bool) (string, string) {
	ns := l.ns(suffix)
	peer := l.tag + "p" + suffix
	nettest.Sh(l.t, "ip", "link", "add", peer, "netns", l.S, "type", "veth", "peer", "name", "e0", "netns", ns)
	nettest.Sh(l.t, "ip", "-n", l.S, "link", "set", peer, "master", l.br)
	nettest.Sh(l.t, "ip", "-n", l.S, "link", "set", peer, "up")
	nettest.Sh(l.t, "ip", "-n", ns, "link", "set", "e0", "up")
	ip := ""
	if addr {
		ip = fmt.Sprintf("10.77.0.%d", l.nextIP)
		l.nextIP++
		nettest.Sh(l.t, "ip", "-n", ns, "addr", "add", ip+"/24", "dev", "e0")
	}
	return ns, ip
}

// child is a helper process (this test binary) running in a namespace.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stdout *nettest.LockedBuffer
	stderr *nettest.LockedBuffer
}

// startChild runs the test function name in ns with cfg as JSON in the
// environment. The child is killed at cleanup if still running.
func startChild(t *testing.T, ns, name string, cfg any) *child {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, done: make(chan struct{}), stdout: &nettest.LockedBuffer{}, stderr: &nettest.LockedBuffer{}}
	c.cmd = exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^"+name+"$", "-test.v=false", "-test.timeout=20m")
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		if !c.exited() {
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// wait waits for the child to exit within d and fails the test if it does
// not or exits with an error.
func (c *child) wait(d time.Duration) {
	c.t.Helper()
	select {
	case <-c.done:
		if c.err != nil {
			c.t.Fatalf("child failed: %v\n%s", c.err, c.stderr.String())
		}
	case <-time.After(d):
		c.cmd.Process.Kill()
		<-c.done
		c.t.Fatalf("child did not finish within %s\n%s", d, c.stderr.String())
	}
}

// stop ends the child with SIGTERM (a clean stop must work) within 10 s.
func (c *child) stop() {
	c.t.Helper()
	if c.exited() {
		c.t.Fatalf("child exited early: %v\n%s", c.err, c.stderr.String())
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.wait(10 * time.Second)
}

// procStatus reads VmRSS (KiB) and Threads of pid.
func procStatus(pid int) (rssKiB, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			rssKiB, _ = strconv.Atoi(f[0])
		case "Threads":
			threads, _ = strconv.Atoi(f[0])
		}
	}
	return rssKiB, threads, nil
}

// assets writes a small assets tree and a secret outside it, and returns
// the assets directory and the secret's content.
func assets(t *testing.T) (dir, secret string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "assets")
	os.MkdirAll(filepath.Join(dir, "lab"), 0o755)
	os.WriteFile(filepath.Join(dir, "lab", "vmlinuz"), bytes.Repeat([]byte("K"), 2<<20), 0o644)
	os.WriteFile(filepath.Join(dir, "lab", "initrd.img"), bytes.Repeat([]byte("I"), 1<<20), 0o644)
	secret = "OBB-SECRET-" + hex.EncodeToString([]byte(t.Name()))
	os.WriteFile(filepath.Join(base, "secret.txt"), []byte(secret), 0o644)
	os.Symlink(filepath.Join(base, "secret.txt"), filepath.Join(dir, "lab", "link"))
	os.Symlink("../../secret.txt", filepath.Join(dir, "lab", "rel"))
	os.Symlink(base, filepath.Join(dir, "up"))
	return dir, secret
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
