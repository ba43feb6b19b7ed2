package dhcp

import (
	"context"
	"fmt"
	"net"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"onramp/netboot"
)

// startKea runs Debian's kea-dhcp4 in ns on iface as the "site" DHCP server
// for 10.88.0.0/24 (memfile leases and lock/pid files in a temp dir, no
// control socket).
func startKea(t *testing.T, ns, iface, subnet, pool string) {
	t.Helper()
	needBin(t, "kea-dhcp4")
	dir := t.TempDir()
	conf := fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": [%q], "dhcp-socket-type": "raw"},
  "lease-database": {"type": "memfile", "persist": true, "name": %q, "lfc-interval": 0},
  "valid-lifetime": 600,
  "subnet4": [{"id": 1, "subnet": %q, "pools": [{"pool": %q}], "interface": %q}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}, {"name": "kea-dhcp4.leases", "output_options": [{"output": "stdout"}], "severity": "WARN"}]
}}`, iface, dir+"/kea-leases4.csv", subnet, pool, iface)
	os.WriteFile(dir+"/kea.json", []byte(conf), 0o644)
	cmd := exec.Command("ip", "netns", "exec", ns, "kea-dhcp4", "-c", dir+"/kea.json")
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir)
	out := &nettest.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kea: %v", err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
		if t.Failed() {
			t.Logf("kea output:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(out.String(), "DHCP4_STARTED") {
			return
		}
		select {
		case <-waited:
			t.Fatalf("kea exited:\n%s", out.String())
		default:
		}
	}
	t.Fatalf("kea did not start:\n%s", out.String())
}

// proxyLab: namespace K holds the site network's bridge (10.88.0.2, kea);
// Onramp (S, 10.88.0.1) and a client (C) hang off it by veths.
type proxyLab struct {
	*lab
	K, S, C      string
	br, sIf, cIf string
	rec          *netboot.Recorder
}

func newProxyLab(t *testing.T) *proxyLab {
	l := &proxyLab{lab: newLab(t), rec: &netboot.Recorder{}}
	l.K, l.S, l.C = l.ns("k"), l.ns("s"), l.ns("c")
	l.br = "obd" + l.tag + "br"
	nettest.Sh(t, "ip", "-n", l.K, "link", "add", l.br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	nettest.Sh(t, "ip", "-n", l.K, "addr", "add", "10.88.0.2/24", "dev", l.br)
	nettest.Sh(t, "ip", "-n", l.K, "link", "set", l.br, "up")
	var kS, kC string
	l.sIf, kS = l.link(l.S, "s0", l.K, "ks")
	l.cIf, kC = l.link(l.C, "c0", l.K, "kc")
	nettest.Sh(t, "ip", "-n", l.K, "link", "set", kS, "master", l.br)
	nettest.Sh(t, "ip", "-n", l.K, "link", "set", kC, "master", l.br)
	nettest.Sh(t, "ip", "-n", l.S, "addr", "add", "10.88.0.1/24", "dev", l.sIf)
	return l
}

func TestProxyBesideKea(t *testing.T) {
	t.Parallel()
	l := newProxyLab(t)
	startKea(t, l.K, l.br, "10.88.0.0/24", "10.88.0.100 - 10.88.0.200")
	s, err := New(Config{Iface: l.sIf, Mode: Proxy, ServerIP: net.ParseIP("10.88.0.1"), Booter: testBooter(nil, nil), Sink: l.rec})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, l.S, s)
	pcap, stopCapture := nettest.Capture(t, l.C, l.cIf, "udp")

	// Probe from the client side finds the site server and our proxy.
	var found []Found
	if err := inNetns(l.C, func() (err error) {
		found, err = Probe(t.Context(), l.cIf, 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var kea, proxy *Found
	for i, f := range found {
		t.Logf("probe: %s", f)
		switch f.ServerID.String() {
		case "10.88.0.2":
			kea = &found[i]
		case "10.88.0.1":
			proxy = &found[i]
		}
	}
	if kea == nil || kea.Proxy() || !strings.HasPrefix(kea.OfferedIP.String(), "10.88.0.") {
		t.Errorf("probe did not find kea offering an address: %v", found)
	}
	if proxy == nil || !proxy.Proxy() || proxy.BootFile != FileBIOS || proxy.VendorClass != "PXEClient" {
		t.Errorf("probe did not find Onramp's proxy with %s: %+v", FileBIOS, proxy)
	}

	// A plain (non-PXE) client gets its address from kea, and Onramp's
	// proxy stays silent to it.
	env := dhclient(t, l.C, l.cIf, "02:00:00:00:02:00", "", 0)
	if env == nil || env["new_dhcp_server_identifier"] != "10.88.0.2" || !strings.HasPrefix(env["new_ip_address"], "10.88.0.1") {
		t.Fatalf("dhclient lease from %q: %q, want one from kea", env["new_dhcp_server_identifier"], env["new_ip_address"])
	}
	// A PXE client's DISCOVER draws both offers: the address from kea, the
	// boot file from Onramp. (busybox udhcpc and ISC dhclient are no PXE
	// clients: they take whichever offer comes first, so only the wire is
	// checked here; the firmware's merge is exercised by the QEMU lab.)
	udhcpc(t, l.C, l.cIf, "02:00:00:00:02:01", "-t", "1", "-T", "1", "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007")
	env["ip"] = env["new_ip_address"]
	// ... and port 4011 gives it the boot file (EDK2's BINL step).
	nettest.Sh(t, "ip", "-n", l.C, "addr", "add", env["ip"]+"/24", "dev", l.cIf)
	ack := pxeRequest(t, l.C, net.ParseIP(env["ip"]), "02:00:00:00:02:01", 7)
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileNameOption() != FileUEFIx64 ||
		!ack.ServerIPAddr.Equal(net.ParseIP("10.88.0.1")) || ack.ClassIdentifier() != "PXEClient" || !ack.YourIPAddr.IsUnspecified() {
		t.Errorf("port 4011 answer: %s", ack.Summary())
	}
	stopCapture()

	// On the wire: our proxy offer to the real client carried the boot file,
	// no address, and option 60 PXEClient; tshark finds nothing malformed.
	out := nettest.Sh(t, "tshark", "-r", pcap, "-Y", "dhcp.option.dhcp == 2 && ip.src == 10.88.0.1 && dhcp.hw.mac_addr == 02:00:00:00:02:01",
		"-T", "fields", "-e", "dhcp.ip.your", "-e", "dhcp.file", "-e", "dhcp.option.vendor_class_id", "-e", "dhcp.option.ip_address_lease_time")
	if !strings.Contains(out, "0.0.0.0\tipxe.efi\tPXEClient\t") || strings.Contains(out, "\t\t600") {
		t.Errorf("proxy offer on the wire: %q", out)
	}
	out = nettest.Sh(t, "tshark", "-r", pcap, "-Y", "dhcp.option.dhcp == 2 && ip.src == 10.88.0.2 && dhcp.hw.mac_addr == 02:00:00:00:02:01",
		"-T", "fields", "-e", "dhcp.ip.your")
	if !strings.HasPrefix(out, "10.88.0.") {
		t.Errorf("kea's offer to the PXE client on the wire: %q", out)
	}
	checkPcap(t, pcap, 2)
	var proxied bool
	for _, e := range l.rec.Events() {
		if e.MAC == "02:00:00:00:02:00" {
			t.Errorf("proxy reacted to a non-PXE client: %+v", e)
		}
		if e.Kind == netboot.EventProxyOffer && e.MAC == "02:00:00:00:02:01" && e.File == FileUEFIx64 {
			proxied = true
		}
	}
	if !proxied {
		t.Error("no proxydhcp.offer event")
	}
}

// pxeRequest sends a DHCPREQUEST to the proxy's port 4011 from ns, as EDK2
// does after a proxy offer, and returns the answer.
func pxeRequest(t *testing.T, ns string, ciaddr net.IP, mac string, arch iana.Arch) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	var reply *dhcpv4.DHCPv4
	err := inNetns(ns, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ciaddr, Port: 4011})
		if err != nil {
			return err
		}
		defer c.Close()
		req, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithClientIP(ciaddr),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:003016", arch))),
			dhcpv4.WithOption(dhcpv4.OptClientArch(arch)))
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		buf := make([]byte, 1500)
		for ctx.Err() == nil {
			c.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: net.ParseIP("10.88.0.1"), Port: 4011})
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				continue
			}
			p, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && p.TransactionID == req.TransactionID {
				reply = p
				return nil
			}
		}
		return fmt.Errorf("no answer on port 4011")
	})
	if err != nil {
		t.Fatal(err)
	}
	return reply
}
