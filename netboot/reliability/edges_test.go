package reliability

import (
	"fmt"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func tsharkCount(t *testing.T, pcap, filter string) []string {
	t.Helper()
	out := strings.TrimSpace(nettest.Sh(t, "tshark", "-r", pcap, "-Y", filter))
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// Interface safety for the whole service: the server's namespace has a
// second interface (10.99.0.1/24) that was not chosen. A machine on it
// broadcasts DHCP and fetches over TFTP and HTTP from 10.99.0.1; tshark on
// that interface must see zero packets from Onramp (ICMP and TCP RST from
// the kernel for closed ports are not Onramp's).
func TestInterfaceSafetyAllServices(t *testing.T) {
	t.Parallel()
	interfaceSafety(t, false)
}

// The same, but the machine on the other interface routes to the served
// address 10.77.0.1 through Onramp's address on its network. Linux (weak
// host model) delivers such packets to any socket bound to 10.77.0.1, so
// only sockets bound to the device (SO_BINDTODEVICE) stay silent: this is
// the case that tells address binding from interface binding.
func TestInterfaceSafetyRoutedToServedAddress(t *testing.T) {
	t.Parallel()
	interfaceSafety(t, true)
}

func interfaceSafety(t *testing.T, routed bool) {
	needRoot(t, "udhcpc", "curl", "tshark")
	l := newLab(t)
	c, _ := l.port("c", false)
	x := l.ns("x")
	other := l.tag + "o"
	nettest.Sh(t, "ip", "link", "add", other, "netns", l.S, "type", "veth", "peer", "name", "e0", "netns", x)
	nettest.Sh(t, "ip", "-n", l.S, "addr", "add", "10.99.0.1/24", "dev", other)
	nettest.Sh(t, "ip", "-n", l.S, "link", "set", other, "up")
	nettest.Sh(t, "ip", "-n", x, "addr", "add", "10.99.0.2/24", "dev", "e0")
	nettest.Sh(t, "ip", "-n", x, "link", "set", "e0", "up")
	target := "10.99.0.1"
	if routed {
		nettest.Sh(t, "ip", "-n", x, "route", "add", "10.77.0.0/24", "via", "10.99.0.1")
		target = serverIP
	}
	dir, _ := assets(t)
	pcap, stop := nettest.Capture(t, l.S, other, "")
	srv := startOnramp(t, l, serverConfig{Assets: dir})

	if !routed {
		if ip, _ := udhcpc(t, x, "-t", "2"); ip != "" {
			t.Errorf("a machine on the interface not chosen got a lease: %s", ip)
		}
	}
	for _, url := range []string{"tftp://" + target + "/ipxe.efi", "http://" + target + ":8080/boot/ipxe.efi"} {
		out, err := exec.Command("ip", "netns", "exec", x, "curl", "-sS", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url).CombinedOutput()
		t.Logf("from the other interface: %s → %s (%v)", url, strings.TrimSpace(string(out)), err)
	}
	// Control: the chosen interface serves.
	ip, out := udhcpc(t, c)
	if ip == "" {
		t.Fatalf("no lease on the chosen interface:\n%s", out)
	}
	nettest.Sh(t, "ip", "-n", c, "addr", "add", ip+"/24", "dev", "e0")
	nettest.Sh(t, "ip", "netns", "exec", c, "curl", "-fsS", "--max-time", "10", "-o", "/dev/null", "tftp://"+serverIP+"/ipxe.efi")
	stop()
	srv.stop()

	if reqs := tsharkCount(t, pcap, "ip.src == 10.99.0.2 && (udp.dstport == 69 || tcp.dstport == 8080)"); len(reqs) == 0 {
		t.Fatal("the capture saw no requests either: the check proves nothing")
	}
	ours := "(ip.src == " + serverIP + " || ip.src == 10.99.0.1) && !icmp && !(tcp.flags.reset == 1) && !arp"
	if got := tsharkCount(t, pcap, ours+" || udp.srcport == 67 || icmpv6.type == 134"); len(got) > 0 {
		if len(got) > 8 {
			got = append(got[:8], fmt.Sprintf("... %d packets in all", len(got)))
		}
		t.Errorf("Onramp answered on the interface not chosen:\n%s", strings.Join(got, "\n"))
	}
}

// The traversal matrix through the real servers: every request that names
// something outside the roots (a secret next to the assets directory,
// /etc/passwd, symlinks pointing out) yields zero bytes of it.
func TestTraversalMatrix(t *testing.T) {
	t.Parallel()
	needRoot(t, "curl", "tftp")
	l := newLab(t)
	c, _ := l.port("c", true)
	dir, secret := assets(t)
	srv := startOnramp(t, l, serverConfig{Assets: dir})
	passwd := "root:x:0:0"

	httpPaths := []string{
		"/assets/../secret.txt", "/assets/..%2fsecret.txt", "/assets/%2e%2e/secret.txt", "/assets/%2e%2e%2fsecret.txt",
		"/assets/%252e%252e/secret.txt", "/assets/..\\secret.txt", "/assets/..%5csecret.txt", "/assets/lab/link",
		"/assets/lab/rel", "/assets/up/secret.txt", "/assets//etc/passwd", "/assets/lab/../../secret.txt",
		"/assets/lab/..%2f..%2fsecret.txt", "/assets/lab/vmlinuz%00/../../../secret.txt", "/assets/" + dir + "/../secret.txt",
		"/boot/../../../../etc/passwd", "/boot/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/boot//etc/passwd", "/boot/..%2f..%2f..%2fetc%2fpasswd",
		"/../../../../etc/passwd", "/ipxe?mac=../../../etc/passwd", "/assets/lab/vmlinuz/../../../secret.txt",
	}
	for _, p := range httpPaths {
		out, _ := exec.Command("ip", "netns", "exec", c, "curl", "-s", "--path-as-is", "--max-time", "5", "-w", "\n%{http_code}", "http://"+serverIP+":8080"+p).Output()
		body := string(out)
		if strings.Contains(body, secret) || strings.Contains(body, passwd) {
			t.Errorf("HTTP %s leaked a file from outside the root:\n%.200s", p, body)
		}
	}
	tftpNames := []string{
		"../secret.txt", "../../../../etc/passwd", "/etc/passwd", "..\\..\\..\\etc\\passwd", "%2e%2e/%2e%2e/etc/passwd",
		"ipxe.efi/../../../../etc/passwd", "./../../etc/passwd", "//etc/passwd", "ipxe.efi\x00/../../etc/passwd", dir + "/../secret.txt",
	}
	for _, name := range tftpNames {
		out, _ := exec.Command("ip", "netns", "exec", c, "curl", "-s", "--path-as-is", "--max-time", "5", "tftp://"+serverIP+"/"+strings.ReplaceAll(name, "\x00", "%00")).Output()
		if strings.Contains(string(out), secret) || strings.Contains(string(out), passwd) {
			t.Errorf("TFTP (curl) %q leaked a file from outside the root", name)
		}
		local := filepath.Join(t.TempDir(), "got")
		exec.Command("ip", "netns", "exec", c, "timeout", "5", "tftp", serverIP, "-m", "binary", "-c", "get", name, local).Run()
		if b, err := os.ReadFile(local); err == nil && (strings.Contains(string(b), secret) || strings.Contains(string(b), passwd)) {
			t.Errorf("TFTP (tftp-hpa) %q leaked a file from outside the root", name)
		}
	}
	// Control: the same clients do fetch what is inside the roots.
	for _, u := range []string{"http://" + serverIP + ":8080/assets/lab/initrd.img", "tftp://" + serverIP + "/ipxe.efi"} {
		out := nettest.Sh(t, "ip", "netns", "exec", c, "curl", "-fsS", "--max-time", "10", "-o", "/dev/null", "-w", "%{size_download}", u)
		if out == "0" {
			t.Errorf("control %s: empty", u)
		}
	}
	srv.stop()
}

// Slow clients (slowloris headers and one-byte-per-second readers) and a
// storm of Range requests at once: a normal client keeps downloading the
// kernel in reasonable time, and the server's goroutines come back down.
func TestSlowClientsAndRanges(t *testing.T) {
	t.Parallel()
	needRoot(t, "curl")
	l := newLab(t)
	s, sIP := l.port("w", true)
	r, rIP := l.port("r", true)
	c, _ := l.port("c", true)
	dir, _ := assets(t)
	srv := startOnramp(t, l, serverConfig{Assets: dir})
	g0 := srv.maxGoroutines()

	hold := pick(12*time.Second, 120*time.Second)
	slow := startChild(t, s, "TestChildGen", genConfig{Mode: "slow", Local: sIP, Count: pick(300, 2000), Hold: hold, Deadline: hold + 30*time.Second})
	ranges := startChild(t, r, "TestChildGen", genConfig{Mode: "ranges", Local: rIP, Count: pick(2000, 50000), Workers: 16, Seed: 1, Deadline: hold})
	time.Sleep(2 * time.Second) // let the slow clients connect
	var worst float64
	n := 0
	for start := time.Now(); time.Since(start) < hold-3*time.Second; n++ {
		out, err := exec.Command("ip", "netns", "exec", c, "curl", "-fsS", "--max-time", "10", "-o", "/dev/null", "-w", "%{time_total}", "http://"+serverIP+":8080/assets/lab/vmlinuz").CombinedOutput()
		if err != nil {
			t.Errorf("a normal download failed among slow clients: %v %s", err, out)
			continue
		}
		var d float64
		fmt.Sscan(string(out), &d)
		worst = max(worst, d)
		time.Sleep(200 * time.Millisecond)
	}
	slow.wait(hold + 40*time.Second)
	ranges.wait(hold + 40*time.Second)
	sr, rr := lastResult(t, slow), lastResult(t, ranges)
	peak := srv.maxGoroutines()
	var last string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		lines := strings.Split(strings.TrimSpace(srv.stdout.String()), "\n")
		last = lines[len(lines)-1]
		var v struct{ Goroutines int }
		if jsonUnmarshal(last, &v) == nil && v.Goroutines <= g0+20 {
			break
		}
	}
	t.Logf("%d slow connections (%d refused), %d range requests (%d answered 206, %d failed); %d normal 2 MiB downloads, slowest %.2f s; goroutines %d → peak %d → after %s",
		sr.Sent, sr.Failed, rr.Sent, rr.Acks, rr.Failed, n, worst, g0, peak, last)
	if n == 0 {
		t.Fatal("no normal download was tried")
	}
	if worst > 5 {
		t.Errorf("slowest normal download took %.1f s among slow clients, want < 5 s", worst)
	}
	if rr.Acks == 0 {
		t.Errorf("no range request was answered with 206")
	}
	var after struct{ Goroutines int }
	if err := jsonUnmarshal(last, &after); err == nil && after.Goroutines > g0+20 {
		t.Errorf("goroutines did not come back down after the slow clients left: %d, %d before", after.Goroutines, g0)
	}
	srv.stop()
}
