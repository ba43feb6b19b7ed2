package netns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("ip (iproute2) not installed: %v", err)
	}
}

// testName returns a namespace name with this package's test prefix and
// removes the namespace when the test ends, also on failure.
func testName(t *testing.T) string {
	t.Helper()
	n := fmt.Sprintf("obl-t%06x", rand.IntN(1<<24))
	t.Cleanup(func() {
		if err := Destroy(context.Background(), n); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return n
}

func hostLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return names
}

func links(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v: %s", err, out)
	}
	return string(out)
}

func TestCreateDestroyIdempotent(t *testing.T) {
	t.Parallel()
	needRoot(t)
	ctx := t.Context()
	ns := testName(t)
	cfg := Config{Name: ns, Taps: []string{"tap0", "tap1"}}
	before := hostLinks(t)
	for i := range 2 { // a second Create replaces the first
		if err := Create(ctx, cfg); err != nil {
			t.Fatalf("Create #%d: %v", i+1, err)
		}
	}
	l := links(t, ns)
	for _, want := range []string{"br0", "tap0", "tap1", "master br0", "keep0"} {
		if !strings.Contains(l, want) {
			t.Errorf("links lack %q:\n%s", want, l)
		}
	}
	out, err := exec.Command("ip", "-n", ns, "addr", "show", "dev", "br0").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"inet 10.77.0.1/24", "inet6 fd77::1/64", "LOWER_UP"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("br0 lacks %q:\n%s", want, out)
		}
	}
	// The host's own interfaces are untouched.
	had := map[string]bool{}
	for _, n := range before {
		had[n] = true
	}
	for _, n := range hostLinks(t) {
		if !had[n] && (n == "br0" || strings.HasPrefix(n, "tap")) {
			t.Errorf("lab link %s appeared on the host", n)
		}
	}
	for i := range 2 {
		if err := Destroy(ctx, ns); err != nil {
			t.Fatalf("Destroy #%d: %v", i+1, err)
		}
	}
	if Exists(ns) {
		t.Fatal("namespace still exists after Destroy")
	}
}

// TestCrashLeftovers simulates a crashed lab: the namespace and a process
// inside it survive. The next Create must end that process and start over.
func TestCrashLeftovers(t *testing.T) {
	t.Parallel()
	needRoot(t)
	ctx := t.Context()
	ns := testName(t)
	if err := Create(ctx, Config{Name: ns, Taps: []string{"tap0"}}); err != nil {
		t.Fatal(err)
	}
	leftover := Command(context.Background(), ns, "sleep", "120")
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- leftover.Wait() }()
	t.Cleanup(func() { _ = leftover.Process.Kill() })
	// Wait for ip to exec sleep inside the namespace.
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := Pids(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("leftover process never appeared in the namespace")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := Create(ctx, Config{Name: ns, Taps: []string{"tap0", "tap1"}}); err != nil {
		t.Fatalf("Create over leftovers: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("leftover process still running after Create")
	}
	if l := links(t, ns); !strings.Contains(l, "tap1") {
		t.Errorf("new namespace lacks tap1:\n%s", l)
	}
	if pids, _ := Pids(ctx, ns); len(pids) != 0 {
		t.Errorf("processes in fresh namespace: %v", pids)
	}
}

// TestDoSocketsStayInNamespace listens on the bridge address, which exists
// only inside the namespace, from Do, and connects to it from Do.
func TestDoSocketsStayInNamespace(t *testing.T) {
	t.Parallel()
	needRoot(t)
	ctx := t.Context()
	ns := testName(t)
	if err := Create(ctx, Config{Name: ns}); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Listen("tcp", "10.77.0.1:0"); err == nil {
		t.Skip("host itself has 10.77.0.1; cannot tell namespaces apart")
	}
	var ln net.Listener
	if err := Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "10.77.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen inside namespace: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept() // runs on any thread: the socket is in the namespace
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	// From the host the address is not reachable.
	d := net.Dialer{Timeout: 300 * time.Millisecond}
	if c, err := d.DialContext(ctx, "tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("lab listener reachable from the host namespace")
	}
	var got []byte
	if err := Do(ns, func() error {
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 2)
		n, err := c.Read(buf)
		got = buf[:n]
		return err
	}); err != nil {
		t.Fatalf("dial inside namespace: %v", err)
	}
	if string(got) != "hi" {
		t.Errorf("read %q, want hi", got)
	}
	if err := Do("obl-no-such-ns", func() error { return nil }); err == nil {
		t.Error("Do on a missing namespace succeeded")
	}
}

// TestAdvertiser receives the lab's router advertisement on a raw ICMPv6
// socket inside the namespace (multicast loopback) and decodes it.
func TestAdvertiser(t *testing.T) {
	t.Parallel()
	needRoot(t)
	ns := testName(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := Create(ctx, Config{Name: ns}); err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		mreq := &unix.IPv6Mreq{Multiaddr: [16]byte{0xff, 0x02, 15: 1}}
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		mreq.Interface = uint32(ifi.Index)
		_ = unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq)
		tv := unix.Timeval{Sec: 1}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	a := &Advertiser{NetNS: ns, Iface: "br0", Prefix: netip.MustParsePrefix("fd77::/64"), Interval: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	buf := make([]byte, 1500)
	var ra []byte
	for i := 0; i < 30 && ra == nil; i++ {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		if n > 0 && buf[0] == 134 {
			ra = append([]byte(nil), buf[:n]...)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Advertiser.Run: %v", err)
	}
	if ra == nil {
		t.Fatal("no router advertisement received")
	}
	if len(ra) != 48 || ra[16] != 3 || ra[18] != 64 || ra[19]&0x40 == 0 {
		t.Fatalf("unexpected RA % x", ra)
	}
	if got := netip.AddrFrom16([16]byte(ra[32:48])); got != netip.MustParseAddr("fd77::") {
		t.Errorf("advertised prefix %s, want fd77::", got)
	}
	if ra[2] == 0 && ra[3] == 0 {
		t.Error("checksum not filled in by the kernel")
	}
}
