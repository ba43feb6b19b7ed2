package dhcp

import (
	"context"
	"net"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"onramp/netboot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// kernelBooter boots everything, with a UKI for one MAC.
func testBooter(uki map[string]bool, deny map[string]bool) netboot.Booter {
	return netboot.BooterFunc(func(ctx context.Context, m netboot.Machine) (netboot.Decision, error) {
		if deny[m.MAC.String()] {
			return netboot.Decision{}, netboot.ErrNotApproved
		}
		if uki[m.MAC.String()] {
			return netboot.Decision{Kind: netboot.BootUKI, UKI: "talos/v1.14.1/amd64/uki.signed.efi"}, nil
		}
		return netboot.Decision{Kind: netboot.BootKernel, Kernel: "k", Initrd: "i"}, nil
	})
}

// isolatedLab is a server namespace S and a client namespace C joined by a
// veth pair; the server side has 10.77.0.1/24.
type isolatedLab struct {
	*lab
	S, C      string
	sIf, cIf  string
	leaseFile string
	rec       *netboot.Recorder
	newServer func() *Server
}

func newIsolatedLab(t *testing.T) *isolatedLab {
	l := &isolatedLab{lab: newLab(t)}
	l.S, l.C = l.ns("s"), l.ns("c")
	l.sIf, l.cIf = l.link(l.S, "s0", l.C, "c0")
	nettest.Sh(t, "ip", "-n", l.S, "addr", "add", "10.77.0.1/24", "dev", l.sIf)
	l.leaseFile = t.TempDir() + "/leases"
	l.rec = &netboot.Recorder{}
	l.newServer = func() *Server {
		s, err := New(Config{
			Iface: l.sIf, Mode: Isolated, ServerIP: net.ParseIP("10.77.0.1"),
			LeaseFile: l.leaseFile, LeaseTime: 10 * time.Minute,
			Booter: testBooter(map[string]bool{"02:00:00:00:00:15": true}, map[string]bool{"02:00:00:00:00:66": true}),
			Sink:   l.rec,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return l
}

// udhcpc runs busybox udhcpc once in ns on iface with mac and returns the
// variables its script saw at "bound" (nil if no lease).
func udhcpc(t *testing.T, ns, iface, mac string, args ...string) map[string]string {
	t.Helper()
	needBin(t, "busybox")
	nettest.Sh(t, "ip", "-n", ns, "link", "set", iface, "address", mac)
	dir := t.TempDir()
	script := dir + "/script.sh"
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+dir+"/bound\nexit 0\n"), 0o755)
	cmdArgs := append([]string{"netns", "exec", ns, "busybox", "udhcpc", "-i", iface, "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", script, "-O", "bootfile", "-O", "tftp"}, args...)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", cmdArgs...).CombinedOutput()
	b, err := os.ReadFile(dir + "/bound")
	if err != nil {
		t.Logf("udhcpc got no lease:\n%s", out)
		return nil
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestUdhcpcIsolated(t *testing.T) {
	t.Parallel()
	l := newIsolatedLab(t)
	pcap, stopCapture := nettest.Capture(t, l.C, l.cIf, "udp")
	stop := startServer(t, l.S, l.newServer())

	uuid := "0011223344556677889900aabbccddeeff"[:32]
	cases := []struct {
		name     string
		mac      string
		args     []string
		wantFile string
		wantSI   string
	}{
		{"plain", "02:00:00:00:00:10", nil, "", ""},
		{"bios", "02:00:00:00:00:11", []string{"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"}, "undionly.kpxe", "10.77.0.1"},
		{"uefi-x64", "02:00:00:00:00:12", []string{"-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"}, "ipxe.efi", "10.77.0.1"},
		{"uefi-arm64", "02:00:00:00:00:13", []string{"-V", "PXEClient:Arch:00011:UNDI:003016", "-x", "0x5d:000b"}, "snp.efi", "10.77.0.1"},
		{"http-boot", "02:00:00:00:00:14", []string{"-V", "HTTPClient:Arch:00016:UNDI:003001", "-x", "0x5d:0010"}, "http://10.77.0.1:8080/boot/ipxe.efi", ""},
		{"http-boot-uki", "02:00:00:00:00:15", []string{"-V", "HTTPClient:Arch:00016:UNDI:003001", "-x", "0x5d:0010"}, "http://10.77.0.1:8080/assets/talos/v1.14.1/amd64/uki.signed.efi", ""},
		{"ipxe", "02:00:00:00:00:16", []string{"-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007", "-x", "0x4d:69505845", "-x", "0x61:00" + uuid},
			"http://10.77.0.1:8080/ipxe?arch=7&mac=02%3A00%3A00%3A00%3A00%3A16&uuid=33221100-5544-7766-8899-00aabbccddee", ""},
	}
	got := map[string]string{}
	for _, c := range cases {
		env := udhcpc(t, l.C, l.cIf, c.mac, c.args...)
		if env == nil {
			t.Errorf("%s: no lease", c.name)
			continue
		}
		if !strings.HasPrefix(env["ip"], "10.77.0.") || env["serverid"] != "10.77.0.1" || env["subnet"] != "255.255.255.0" {
			t.Errorf("%s: lease ip=%q serverid=%q subnet=%q", c.name, env["ip"], env["serverid"], env["subnet"])
		}
		if env["bootfile"] != c.wantFile {
			t.Errorf("%s: option 67 = %q, want %q", c.name, env["bootfile"], c.wantFile)
		}
		if env["boot_file"] != c.wantFile {
			t.Errorf("%s: file field = %q, want %q", c.name, env["boot_file"], c.wantFile)
		}
		if c.wantSI != "" && (env["siaddr"] != c.wantSI || env["tftp"] != c.wantSI) {
			t.Errorf("%s: siaddr=%q option 66=%q, want %s", c.name, env["siaddr"], env["tftp"], c.wantSI)
		}
		got[c.mac] = env["ip"]
	}
	// An unapproved machine gets nothing, and the timeline says why.
	if env := udhcpc(t, l.C, l.cIf, "02:00:00:00:00:66", "-t", "2"); env != nil {
		t.Errorf("unapproved MAC got a lease: %v", env["ip"])
	}
	var ignored bool
	for _, e := range l.rec.Events() {
		if e.Kind == netboot.EventDHCPIgnored && e.MAC == "02:00:00:00:00:66" && strings.Contains(e.Err, "allowlist") {
			ignored = true
		}
	}
	if !ignored {
		t.Error("no dhcp.ignored event for the unapproved MAC")
	}

	// Restart: the same MAC gets the same address back from the lease file.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	startServer(t, l.S, l.newServer())
	for _, mac := range []string{"02:00:00:00:00:11", "02:00:00:00:00:16"} {
		env := udhcpc(t, l.C, l.cIf, mac)
		if env == nil || env["ip"] != got[mac] {
			t.Errorf("after restart %s got %v, want %s", mac, env["ip"], got[mac])
		}
	}
	stopCapture()
	checkPcap(t, pcap, 8)
}

// checkPcap asserts that tshark decodes at least min DHCP packets from our
// server and flags none as malformed.
func checkPcap(t *testing.T, pcap string, min int) {
	t.Helper()
	out := nettest.Sh(t, "tshark", "-r", pcap, "-Y", "dhcp && udp.srcport == 67", "-T", "fields", "-e", "dhcp.option.dhcp")
	n := len(strings.Fields(out))
	if n < min {
		t.Errorf("tshark saw %d server DHCP packets, want at least %d", n, min)
	}
	bad := nettest.Sh(t, "tshark", "-r", pcap, "-Y", "_ws.malformed || _ws.expert.severity >= warning && dhcp")
	if strings.TrimSpace(bad) != "" {
		t.Errorf("tshark flags packets:\n%s", bad)
	}
	t.Logf("tshark decoded %d server DHCP packets, none malformed", n)
}
