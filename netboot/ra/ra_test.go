package ra

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBuild(t *testing.T) {
	t.Parallel()
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	got := Build(mac, netip.MustParsePrefix("fd77::/64"), time.Hour, 30*time.Minute)
	want := []byte{
		134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // RA header, router lifetime 0
		1, 1, 0x02, 0, 0, 0, 0, 1, // source link-layer address
		3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x07, 0x08, 0, 0, 0, 0, // prefix info: L|A, 3600 s, 1800 s
		0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Build:\n got %x\nwant %x", got, want)
	}
}

func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// TestRAInNetns: a sender in namespace A on one end of a veth; on the other
// end (namespace B) rdisc6 (ndisc6) solicits and decodes the answer, the
// Linux kernel autoconfigures an fd77:: address from the unsolicited RAs,
// and tshark decodes them with no malformed flags.
func TestRAInNetns(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range []string{"ip", "tshark"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	tag := "obd" + hex.EncodeToString(b)
	A, B := tag+"a", tag+"b"
	for _, ns := range []string{A, B} {
		nettest.Sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		nettest.Sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	aIf, bIf := tag+"a0", tag+"b0"
	nettest.Sh(t, "ip", "link", "add", aIf, "netns", A, "type", "veth", "peer", "name", bIf, "netns", B)
	nettest.Sh(t, "ip", "netns", "exec", A, "sysctl", "-qw", "net.ipv6.conf."+aIf+".accept_dad=0")
	nettest.Sh(t, "ip", "netns", "exec", B, "sysctl", "-qw", "net.ipv6.conf."+bIf+".accept_dad=0")
	nettest.Sh(t, "ip", "-n", A, "link", "set", aIf, "up")
	nettest.Sh(t, "ip", "-n", B, "link", "set", bIf, "up")
	// The sender needs its link-local source address.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out := nettest.Sh(t, "ip", "-n", A, "-6", "addr", "show", "dev", aIf)
		if strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no link-local address on %s:\n%s", aIf, out)
		}
	}

	pcap := t.TempDir() + "/ra.pcap"
	capCmd := exec.Command("ip", "netns", "exec", B, "tshark", "-i", bIf, "-w", pcap, "-q", "-f", "icmp6")
	capErr := &nettest.LockedBuffer{}
	capCmd.Stderr = capErr
	if err := capCmd.Start(); err != nil {
		t.Fatal(err)
	}
	capDone := make(chan struct{})
	go func() { capCmd.Wait(); close(capDone) }()
	stopCap := func() {
		time.Sleep(300 * time.Millisecond)
		capCmd.Process.Signal(os.Interrupt)
		select {
		case <-capDone:
		case <-time.After(5 * time.Second):
			capCmd.Process.Kill()
			<-capDone
		}
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(capErr.String(), "Capturing on") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}

	ready := make(chan struct{})
	s, err := New(Config{Iface: aIf, Interval: 3 * time.Second, onReady: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- inNetns(A, func() error { return s.Run(ctx) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("sender: %v", err)
	}

	started := time.Now()
	if _, err := exec.LookPath("rdisc6"); err == nil {
		out, err := exec.Command("ip", "netns", "exec", B, "rdisc6", "-1", "-w", "2000", "-r", "2", bIf).CombinedOutput()
		if err != nil {
			t.Errorf("rdisc6: %v\n%s", err, out)
		}
		for _, want := range []string{"Router lifetime", "0 (0x00000000) seconds", "Prefix", "fd77::/64"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("rdisc6 output lacks %q:\n%s", want, out)
			}
		}
	} else {
		t.Log("rdisc6 (ndisc6) not installed: solicited answer not checked by a peer")
	}
	var slaac bool
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if strings.Contains(nettest.Sh(t, "ip", "-n", B, "-6", "addr", "show", "dev", bIf), "inet6 fd77::") {
			slaac = true
			break
		}
	}
	if !slaac {
		t.Error("the peer's kernel formed no fd77:: address from our RAs")
	}
	if routes := nettest.Sh(t, "ip", "-n", B, "-6", "route", "show", "default"); strings.TrimSpace(routes) != "" {
		t.Errorf("peer installed a default route through us (router lifetime must be 0): %s", routes)
	}
	time.Sleep(time.Until(started.Add(4 * time.Second))) // one periodic RA at least (3 s ± 25 %)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("sender run: %v", err)
	}
	stopCap()
	ras := nettest.Sh(t, "tshark", "-r", pcap, "-Y", "icmpv6.type == 134 && icmpv6.nd.ra.router_lifetime == 0 && icmpv6.opt.prefix == fd77::", "-T", "fields", "-e", "ipv6.hlim", "-e", "ipv6.dst")
	if n := strings.Count(ras, "\n"); n < 1 || strings.Count(ras, "255\t") != n || !strings.Contains(ras, "ff02::1") {
		t.Errorf("tshark saw %d RAs (want ≥ 1, all hop limit 255, one to ff02::1): %q", n, ras)
	}
	if bad := nettest.Sh(t, "tshark", "-r", pcap, "-Y", "_ws.malformed || (icmpv6 && _ws.expert.severity >= warning)"); strings.TrimSpace(bad) != "" {
		t.Errorf("tshark flags packets:\n%s", bad)
	}
}
