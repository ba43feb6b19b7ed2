package dhcp

import (
	"context"
	"net"
	"onramp/netboot/nettest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"onramp/netboot"
)

// TestWatchForeignServer: the watcher beside our own isolated server raises
// no alarm for it, then raises one within seconds when kea appears.
func TestWatchForeignServer(t *testing.T) {
	t.Parallel()
	l := newIsolatedLab(t)
	startServer(t, l.S, l.newServer())
	rec := &netboot.Recorder{}
	w, err := NewWatch(WatchConfig{Iface: l.sIf, Own: []net.IP{net.ParseIP("10.77.0.1")}, Period: time.Second, Timeout: time.Second, Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- inNetns(l.S, func() error { return w.Run(ctx) }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	time.Sleep(3 * time.Second) // two probes or more
	if ev := rec.Events(); len(ev) != 0 {
		t.Fatalf("alarm with only our own server on the network: %+v", ev)
	}
	nettest.Sh(t, "ip", "-n", l.C, "addr", "add", "10.77.0.2/24", "dev", l.cIf)
	startKea(t, l.C, l.cIf, "10.77.0.0/24", "10.77.0.200 - 10.77.0.220")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range rec.Events() {
			if e.Kind == netboot.EventForeignDHCP && e.IP == "10.77.0.2" && strings.Contains(e.Err, "another DHCP server") {
				t.Logf("alarm: %s", e.Err)
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no foreign-dhcp alarm for kea: %+v", rec.Events())
}

// TestInterfaceSafety: with two interfaces in the server's namespace and the
// server bound to one, a client on the other gets zero replies.
func TestInterfaceSafety(t *testing.T) {
	t.Parallel()
	l := newIsolatedLab(t)
	X := l.ns("x")
	sOther, xIf := l.link(l.S, "s1", X, "x1")
	nettest.Sh(t, "ip", "-n", l.S, "addr", "add", "10.79.0.1/24", "dev", sOther)
	pcap, stopCapture := nettest.Capture(t, X, xIf, "udp")
	startServer(t, l.S, l.newServer())
	if env := udhcpc(t, X, xIf, "02:00:00:00:03:01", "-t", "2", "-T", "1", "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"); env != nil {
		t.Errorf("client on the other interface got a lease: %v", env["ip"])
	}
	// Control: the chosen interface does answer.
	if env := udhcpc(t, l.C, l.cIf, "02:00:00:00:03:02"); env == nil {
		t.Error("client on the chosen interface got no lease")
	}
	stopCapture()
	out, err := exec.Command("tshark", "-r", pcap, "-Y", "udp.srcport == 67").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("replies seen on the interface not chosen:\n%s", out)
	}
	requests, _ := exec.Command("tshark", "-r", pcap, "-Y", "udp.dstport == 67").Output()
	if strings.TrimSpace(string(requests)) == "" {
		t.Error("capture saw no client requests either: the check proves nothing")
	}
	for _, e := range l.rec.Events() {
		if e.MAC == "02:00:00:00:03:01" {
			t.Errorf("server saw the other interface's client: %+v", e)
		}
	}
}
