package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/siderolabs/siderolink/api/events"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"onramp/netboot"
	"onramp/netboot/nettest"
	talosevents "onramp/talos/events"
)

func TestAddKernelArgs(t *testing.T) {
	t.Parallel()
	args := talosArgs("10.77.0.1", 4002, 4001)
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"added", []string{"talos.platform=metal"}, []string{"talos.platform=metal", "talos.events.sink=10.77.0.1:4002", "talos.logging.kernel=tcp://10.77.0.1:4001"}},
		{"plan's sink wins", []string{"talos.events.sink=[fd00::1]:9000"}, []string{"talos.events.sink=[fd00::1]:9000", "talos.logging.kernel=tcp://10.77.0.1:4001"}},
		{"plan's kmsg wins", []string{"talos.logging.kernel=udp://10.0.0.9:514", "talos.events.sink=10.0.0.9:4002"}, []string{"talos.logging.kernel=udp://10.0.0.9:514", "talos.events.sink=10.0.0.9:4002"}},
		{"empty", nil, args},
	}
	for _, tt := range tests {
		in := append([]string(nil), tt.in...)
		d := addKernelArgs(netboot.Decision{Kind: netboot.BootKernel, Cmdline: in}, args)
		if diff := cmp.Diff(tt.want, d.Cmdline); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
		if diff := cmp.Diff(tt.in, in); diff != "" {
			t.Errorf("%s: the plan's command line was modified", tt.name)
		}
	}
	if got := talosArgs("10.77.0.1", 0, 4001); !cmp.Equal(got, []string{"talos.logging.kernel=tcp://10.77.0.1:4001"}) {
		t.Errorf("events off: %v", got)
	}
	// UKI and local boots are left alone.
	b := withKernelArgs(netboot.BooterFunc(func(context.Context, netboot.Machine) (netboot.Decision, error) {
		return netboot.Decision{Kind: netboot.BootUKI, UKI: "x.efi"}, nil
	}), args)
	if d, _ := b.Boot(t.Context(), netboot.Machine{}); d.Cmdline != nil {
		t.Errorf("UKI decision got a command line: %v", d.Cmdline)
	}
}

func TestIPToMACResolver(t *testing.T) {
	t.Parallel()
	m := &ipToMAC{next: netboot.Discard, m: map[string]string{}}
	m.Emit(netboot.Event{Kind: netboot.EventDHCPAck, IP: "10.77.0.20", MAC: "52:54:00:77:00:10"})
	if mac, ok := m.MACForIP(netip.MustParseAddr("::ffff:10.77.0.20")); !ok || mac != "52:54:00:77:00:10" {
		t.Errorf("MACForIP = %q, %v", mac, ok)
	}
	if _, ok := m.MACForIP(netip.MustParseAddr("10.77.0.21")); ok {
		t.Error("unknown address resolved")
	}
}

const publishEnv = "ONRAMP_SERVER_TEST_PUBLISH"

// TestChildPublish is TestServeTalosReceivers' Talos half: run in the
// client namespace, it publishes like Talos' EventsSinkController.
func TestChildPublish(t *testing.T) {
	addr := os.Getenv(publishEnv)
	if addr == "" {
		t.Skip("helper process for TestServeTalosReceivers")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := events.NewEventSinkServiceClient(conn)
	for _, st := range []machine.MachineStatusEvent_MachineStage{machine.MachineStatusEvent_MAINTENANCE, machine.MachineStatusEvent_INSTALLING} {
		a, err := anypb.New(&machine.MachineStatusEvent{Stage: st, Status: &machine.MachineStatusEvent_MachineStatus{}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err = c.Publish(ctx, &events.EventRequest{Id: "d4ql3g0000000000000" + st.String()[:1], Data: a})
		cancel()
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
}

// TestServeTalosReceivers: a leased client's iPXE script points Talos at
// Onramp's receivers; events published with siderolink's client and kernel
// log lines sent with netcat from the client's namespace land on the
// client's timeline under its MAC.
func TestServeTalosReceivers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("nc"); err != nil {
		t.Skip("needs nc (netcat-openbsd, real peer)")
	}
	srvNS, cliNS, srvIf, cliIf := eventsNet(t)
	stop := startChild(t, srvNS, childConfig{
		Iface: srvIf, Mode: "isolated", Data: t.TempDir(), EventsPort: 4002, KmsgPort: 4001,
		UEFI: netboot.Decision{Kind: netboot.BootKernel, Kernel: "lab/vmlinuz", Initrd: "lab/initrd.gz", Cmdline: []string{"talos.platform=metal"}},
	})
	v := udhcpcLease(t, cliNS, cliIf, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007", "-x", "0x4d:69505845")
	nettest.Sh(t, "ip", "-n", cliNS, "addr", "add", v["ip"]+"/24", "dev", cliIf)
	script := nettest.Sh(t, "ip", "netns", "exec", cliNS, "curl", "-fsS", v["boot_file"])
	for _, arg := range []string{"talos.events.sink=10.77.0.1:4002", "talos.logging.kernel=tcp://10.77.0.1:4001"} {
		if !strings.Contains(script, arg) {
			t.Errorf("iPXE script lacks %s:\n%s", arg, script)
		}
	}
	line := `{"clock":1,"facility":"kern","msg":"%s","priority":"warning","seq":7,"talos-level":"warn","talos-time":"2026-11-29T15:30:01Z"}`
	for _, p := range [][]string{{"-N", "-w", "2"}, {"-u", "-w", "1"}} {
		proto := "tcp"
		if p[0] == "-u" {
			proto = "udp"
		}
		cmd := exec.Command("ip", append(append([]string{"netns", "exec", cliNS, "nc"}, p...), "10.77.0.1", "4001")...)
		cmd.Stdin = strings.NewReader(strings.Replace(line, "%s", "kmsg over "+proto, 1) + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nc %s: %v\n%s", proto, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pub := exec.CommandContext(ctx, "ip", "netns", "exec", cliNS, os.Args[0], "-test.run=^TestChildPublish$", "-test.v")
	pub.Env = append(os.Environ(), publishEnv+"=10.77.0.1:4002")
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("publish child: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond) // the UDP datagram has no acknowledgement
	evs := stop()
	cliMAC := strings.TrimSpace(nettest.Sh(t, "ip", "netns", "exec", cliNS, "cat", "/sys/class/net/"+cliIf+"/address"))
	var got []string
	for _, e := range evs {
		if e.Kind != talosevents.EventTalos && e.Kind != talosevents.EventKmsg {
			continue
		}
		if e.MAC != cliMAC || e.IP != v["ip"] {
			t.Errorf("%s event from MAC %q IP %q, want %s %s", e.Kind, e.MAC, e.IP, cliMAC, v["ip"])
		}
		got = append(got, string(e.Kind)+" "+e.Detail+" "+e.Attrs["stage"]+e.Attrs["priority"])
	}
	want := []string{
		"talos.kmsg kmsg over tcp warning",
		"talos.kmsg kmsg over udp warning",
		"talos.event stage: maintenance maintenance",
		"talos.event stage: installing installing",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Talos events (-want +got):\n%s", d)
	}
}

// eventsNet is testNet with this file's namespace prefix.
func eventsNet(t *testing.T) (srvNS, cliNS, srvIf, cliIf string) {
	t.Helper()
	for _, bin := range []string{"ip", "udhcpc", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (real peer)", bin)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	tag := "oev" + hex.EncodeToString(b)
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
