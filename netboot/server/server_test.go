package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"onramp/netboot/nettest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"onramp/netboot"
)

// The server runs in a child process started with `ip netns exec`, so that
// every socket it opens (including those opened by goroutines) lives in the
// test's namespace. The child is this test binary running TestChildServer.
const childEnv = "ONRAMP_SERVER_TEST_CHILD"

type childConfig struct {
	Iface, Mode, Data, Assets string
	UEFI                      netboot.Decision
	EventsPort, KmsgPort      int
}

func TestChildServer(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("helper process for TestServe*")
	}
	var cc childConfig
	if err := json.Unmarshal([]byte(raw), &cc); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	enc := json.NewEncoder(os.Stdout)
	sink := netboot.SinkFunc(func(e netboot.Event) { enc.Encode(e) })
	booter := netboot.BooterFunc(func(context.Context, netboot.Machine) (netboot.Decision, error) { return cc.UEFI, nil })
	srv, err := New(Config{Iface: cc.Iface, Mode: Mode(cc.Mode), DataDir: cc.Data, AssetsDir: cc.Assets, Booter: booter, Sink: sink, ProbeTimeout: time.Second, EventsPort: cc.EventsPort, KmsgPort: cc.KmsgPort})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "child: mode %s, stopped\n", srv.Mode())
}

// testNet makes two namespaces joined by a veth pair: the server side has
// 10.77.0.1/24, the client side none. Everything is removed on cleanup.
func testNet(t *testing.T) (srvNS, cliNS, srvIf, cliIf string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, bin := range []string{"ip", "udhcpc", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (real peer)", bin)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	tag := "obm" + hex.EncodeToString(b)
	srvNS, cliNS, srvIf, cliIf = tag+"s", tag+"c", tag+"a", tag+"b"
	for _, ns := range []string{srvNS, cliNS} {
		nettest.Sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		nettest.Sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	nettest.Sh(t, "ip", "link", "add", srvIf, "netns", srvNS, "type", "veth", "peer", "name", cliIf, "netns", cliNS)
	nettest.Sh(t, "ip", "-n", srvNS, "addr", "add", "10.77.0.1/24", "dev", srvIf)
	nettest.Sh(t, "ip", "-n", srvNS, "link", "set", srvIf, "up")
	nettest.Sh(t, "ip", "-n", cliNS, "link", "set", cliIf, "up")
	return
}

// startChild runs the server in srvNS and returns a function that stops it
// and returns the events it emitted.
func startChild(t *testing.T, srvNS string, cc childConfig) func() []netboot.Event {
	t.Helper()
	raw, _ := json.Marshal(cc)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", srvNS, os.Args[0], "-test.run=^TestChildServer$", "-test.v=false")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() []netboot.Event {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("server exited with %v\n%s", err, stderr.String())
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Errorf("server did not stop within 10 s after SIGTERM\n%s", stderr.String())
			}
		}
		var evs []netboot.Event
		dec := json.NewDecoder(&stdout)
		for {
			var e netboot.Event
			if dec.Decode(&e) != nil {
				break
			}
			evs = append(evs, e)
		}
		return evs
	}
	t.Cleanup(func() { stop() })
	// Wait until HTTP answers: the server probes first (1 s), then binds.
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if exec.Command("ip", "netns", "exec", srvNS, "curl", "-fsS", "-o", "/dev/null", "http://10.77.0.1:8080/boot/ipxe.efi").Run() == nil {
			return stop
		}
		select {
		case err := <-done:
			t.Fatalf("server exited early: %v\n%s", err, stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("server did not come up\n%s", stderr.String())
	return nil
}

// udhcpcLease runs busybox udhcpc once in ns with extra options and returns
// the variables its script saw (ip, boot_file, siaddr, ...).
func udhcpcLease(t *testing.T, ns, iface string, opts ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	out := filepath.Join(dir, "vars")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+out+"\nexit 0\n"), 0o755)
	args := append([]string{"netns", "exec", ns, "udhcpc", "-i", iface, "-n", "-q", "-f", "-t", "4", "-T", "2", "-s", script}, opts...)
	cmd := exec.Command("ip", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("udhcpc %v: %v\n%s", opts, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("udhcpc got no lease: %v", err)
	}
	vars := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

// A UEFI client gets a lease and ipxe.efi over DHCP, fetches it over TFTP;
// as iPXE it gets its script URL, whose kernel and initrd are served. Every
// name the DHCP side advertises is fetched from the real servers (contract).
func TestServeIsolatedEndToEnd(t *testing.T) {
	srvNS, cliNS, srvIf, cliIf := testNet(t)
	assets := t.TempDir()
	os.MkdirAll(filepath.Join(assets, "lab"), 0o755)
	kernel := bytes.Repeat([]byte("K"), 1<<20)
	os.WriteFile(filepath.Join(assets, "lab", "vmlinuz"), kernel, 0o644)
	os.WriteFile(filepath.Join(assets, "lab", "initrd.gz"), []byte("initrd"), 0o644)
	stop := startChild(t, srvNS, childConfig{
		Iface: srvIf, Mode: "auto", Data: t.TempDir(), Assets: assets,
		UEFI: netboot.Decision{Kind: netboot.BootKernel, Kernel: "lab/vmlinuz", Initrd: "lab/initrd.gz", Cmdline: []string{"talos.platform=metal"}},
	})

	// Firmware PXE, UEFI x86-64: option 93 = 7, vendor class PXEClient.
	v := udhcpcLease(t, cliNS, cliIf, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007")
	if !strings.HasPrefix(v["ip"], "10.77.0.") || v["boot_file"] != "ipxe.efi" || v["siaddr"] != "10.77.0.1" {
		t.Fatalf("UEFI PXE lease: ip=%q boot_file=%q siaddr=%q", v["ip"], v["boot_file"], v["siaddr"])
	}
	nettest.Sh(t, "ip", "-n", cliNS, "addr", "add", v["ip"]+"/24", "dev", cliIf)
	got := nettest.Sh(t, "ip", "netns", "exec", cliNS, "curl", "-fsS", "tftp://10.77.0.1/"+v["boot_file"])
	want, _ := os.ReadFile("/usr/lib/ipxe/ipxe.efi")
	if got != string(want) {
		t.Fatalf("TFTP %s: %d bytes, want the %d bytes of /usr/lib/ipxe/ipxe.efi", v["boot_file"], len(got), len(want))
	}

	// iPXE: user class "iPXE" (option 77) → the HTTP URL of its script.
	v2 := udhcpcLease(t, cliNS, cliIf, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007", "-x", "0x4d:69505845")
	if v2["ip"] != v["ip"] {
		t.Errorf("same MAC got a second address: %s then %s", v["ip"], v2["ip"])
	}
	scriptURL := v2["boot_file"]
	if !strings.HasPrefix(scriptURL, "http://10.77.0.1:8080/ipxe?") {
		t.Fatalf("iPXE boot file = %q, want the script URL", scriptURL)
	}
	script := nettest.Sh(t, "ip", "netns", "exec", cliNS, "curl", "-fsS", scriptURL)
	t.Logf("lease %s, boot file %s, script:\n%s", v["ip"], scriptURL, script)
	if !strings.HasPrefix(script, "#!ipxe") || !strings.Contains(script, "talos.platform=metal") {
		t.Fatalf("script:\n%s", script)
	}
	for _, line := range strings.Split(script, "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "http://") {
				b := nettest.Sh(t, "ip", "netns", "exec", cliNS, "curl", "-fsS", f)
				if strings.HasSuffix(f, "vmlinuz") && b != string(kernel) {
					t.Errorf("%s: content differs", f)
				}
			}
		}
	}

	evs := stop()
	kinds := map[netboot.EventKind]int{}
	var tftpMAC string
	for _, e := range evs {
		kinds[e.Kind]++
		if e.Kind == netboot.EventTFTPDone {
			tftpMAC = e.MAC
		}
	}
	for _, k := range []netboot.EventKind{netboot.EventDHCPAck, netboot.EventTFTPDone, netboot.EventIPXEScript, netboot.EventHTTPDone} {
		if kinds[k] == 0 {
			t.Errorf("no %s event; got %v", k, kinds)
		}
	}
	cliMAC := strings.TrimSpace(nettest.Sh(t, "ip", "netns", "exec", cliNS, "cat", "/sys/class/net/"+cliIf+"/address"))
	if tftpMAC != cliMAC {
		t.Errorf("tftp.done event MAC = %q, want the client's %s (learned from its lease)", tftpMAC, cliMAC)
	}
}

func TestNewRefusesNoInterface(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Booter: netboot.BooterFunc(nil), DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no interface chosen") {
		t.Fatalf("err = %v", err)
	}
	if _, err := ParseMode("both"); err == nil {
		t.Fatal("ParseMode accepted nonsense")
	}
	_ = net.IPv4zero
}
