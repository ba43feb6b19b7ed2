package dhcp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHelperServer is not a test: TestKill9UnderLoad runs the test binary
// with OBD_HELPER_IFACE set, inside a namespace, as a separate server
// process it can kill -9.
func TestHelperServer(t *testing.T) {
	iface := os.Getenv("OBD_HELPER_IFACE")
	if iface == "" {
		t.Skip("helper process for TestKill9UnderLoad")
	}
	_, subnet, _ := net.ParseCIDR("10.77.0.0/16")
	s, err := New(Config{Iface: iface, ServerIP: net.ParseIP("10.77.0.1"), Subnet: subnet,
		PoolStart: net.ParseIP("10.77.1.0"), PoolEnd: net.ParseIP("10.77.8.255"),
		LeaseFile: os.Getenv("OBD_HELPER_LEASES"), LeaseTime: time.Hour, Booter: testBooter(nil, nil)})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	s.onReady = func() { fmt.Println("ready") }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := s.Run(ctx); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startHelper starts the server process in ns and returns once it serves.
func startHelper(t *testing.T, ns, iface, leases string) (*exec.Cmd, time.Duration) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHelperServer$")
	cmd.Env = append(os.Environ(), "OBD_HELPER_IFACE="+iface, "OBD_HELPER_LEASES="+leases)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); l == "ready" || strings.HasPrefix(l, "error:") {
				ready <- l
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-ready:
		if l != "ready" {
			t.Fatalf("helper server: %s", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("helper server did not start in 10 s")
	}
	return cmd, time.Since(start)
}

// TestKill9UnderLoad: perfdhcp (as a relay) drives DORA exchanges while the
// server process is killed with SIGKILL and restarted. Every ACK seen on the
// wire must be in the lease file afterwards, no address may have been ACKed
// to two MACs, and the restarted server must serve within 2 s.
func TestKill9UnderLoad(t *testing.T) {
	t.Parallel()
	needBin(t, "perfdhcp")
	needBin(t, "tshark")
	l := newIsolatedLab(t)
	nettest.Sh(t, "ip", "-n", l.C, "addr", "add", "10.77.0.2/16", "dev", l.cIf)
	nettest.Sh(t, "ip", "-n", l.S, "addr", "change", "10.77.0.1/16", "dev", l.sIf)
	pcap, stopCapture := nettest.Capture(t, l.C, l.cIf, "udp")
	srv, _ := startHelper(t, l.S, l.sIf, l.leaseFile)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	perf := exec.CommandContext(ctx, "ip", "netns", "exec", l.C, "perfdhcp", "-4", "-l", "10.77.0.2", "-r", "300", "-R", "1500", "-p", "4", "-W", "500000", "10.77.0.1")
	perfOut := &nettest.LockedBuffer{}
	perf.Stdout, perf.Stderr = perfOut, perfOut
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	srv.Process.Signal(syscall.SIGKILL)
	srv.Wait()
	_, restart := startHelper(t, l.S, l.sIf, l.leaseFile)
	t.Logf("restarted after kill -9: serving in %v", restart)
	if restart > 2*time.Second {
		t.Errorf("restart took %v, want < 2 s", restart)
	}
	perf.Wait()
	stopCapture()
	t.Logf("perfdhcp:\n%s", perfOut.String())

	// ACKs on the wire: chaddr and yiaddr.
	out := nettest.Sh(t, "tshark", "-r", pcap, "-Y", "dhcp.option.dhcp == 5", "-T", "fields", "-e", "dhcp.hw.mac_addr", "-e", "dhcp.ip.your")
	acked := map[string]string{} // ip → mac
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		mac, ip, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		n++
		if prev, dup := acked[ip]; dup && prev != mac {
			t.Errorf("address %s ACKed to %s and %s", ip, prev, mac)
		}
		acked[ip] = mac
	}
	if n < 300 {
		t.Fatalf("only %d ACKs on the wire: the load proves nothing", n)
	}
	// The lease file holds every ACKed lease (it stays locked while the
	// restarted server runs; a copy is read).
	if st, err := openLeaseStore(l.leaseFile); err == nil {
		st.Close()
		t.Error("lease file not locked while the server runs")
	}
	t.Logf("%d ACKs for %d addresses on the wire", n, len(acked))
	checkLeaseFile(t, l.leaseFile, acked)
}

func checkLeaseFile(t *testing.T, path string, acked map[string]string) {
	t.Helper()
	// Read the journal without taking the lock: parse it as openLeaseStore
	// does, on a copy.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := t.TempDir() + "/leases"
	os.WriteFile(cp, b, 0o600)
	st, err := openLeaseStore(cp)
	if err != nil {
		t.Fatalf("lease file after kill -9: %v", err)
	}
	defer st.Close()
	lost := 0
	for ip, mac := range acked {
		bnd := st.byMAC[mac]
		if bnd == nil || u2ip(bnd.ip).String() != ip {
			lost++
			if lost < 5 {
				t.Errorf("ACKed lease %s → %s not in the lease file (%+v)", mac, ip, bnd)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged leases lost", lost)
	}
}
