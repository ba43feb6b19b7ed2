package dhcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Test network plumbing: namespaces and veths named obd<random>…, all
// removed in t.Cleanup. Nothing here touches a host interface.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
}

func needBin(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s (a real peer; install the Debian package)", name)
	}
	return p
}

func randTag() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lab is a set of namespaces joined by veth pairs.
type lab struct {
	t   *testing.T
	tag string
}

func newLab(t *testing.T) *lab {
	needRoot(t)
	return &lab{t: t, tag: randTag()}
}

// ns creates namespace obd<tag><suffix> with lo up.
func (l *lab) ns(suffix string) string {
	name := "obd" + l.tag + suffix
	nettest.Sh(l.t, "ip", "netns", "add", name)
	l.t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	nettest.Sh(l.t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// link creates a veth pair obd<tag><a> in nsA and obd<tag><b> in nsB, both up,
// and returns their names.
func (l *lab) link(nsA, a, nsB, b string) (string, string) {
	ia, ib := "obd"+l.tag+a, "obd"+l.tag+b
	nettest.Sh(l.t, "ip", "link", "add", ia, "netns", nsA, "type", "veth", "peer", "name", ib, "netns", nsB)
	nettest.Sh(l.t, "ip", "-n", nsA, "link", "set", ia, "up")
	nettest.Sh(l.t, "ip", "-n", nsB, "link", "set", ib, "up")
	return ia, ib
}

// inNetns runs f on an OS thread switched into namespace ns. Sockets that f
// opens stay in ns after the thread switches back.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			runtime.UnlockOSThread()
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread() // else the thread dies with the goroutine
		}
		errc <- ferr
	}()
	return <-errc
}

// startServer runs s in namespace ns until the test ends (or stop is called)
// and waits until its sockets are open.
func startServer(t *testing.T, ns string, s *Server) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	s.onReady = func() { close(ready) }
	done := make(chan error, 1)
	go func() { done <- inNetns(ns, func() error { return s.Run(ctx) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("server did not start in 5 s")
	}
	var stopped bool
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				runErr = fmt.Errorf("server did not stop in 5 s")
			}
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("server run: %v", err)
		}
	})
	return stop
}
