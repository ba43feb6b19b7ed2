package sim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
	"github.com/siderolabs/siderolink/api/events"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/resources/hardware"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"onramp/lab/sim"
	"onramp/lab/sim/simtest"
	"onramp/talos/node"
)

// goleak: every simulator Run in this package must leave no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func openTPM(t *testing.T) transport.TPMCloser {
	t.Helper()

	tpm, err := simulator.OpenSimulator()
	if err != nil {
		t.Fatalf("open TPM simulator: %v", err)
	}

	t.Cleanup(func() { tpm.Close() })

	return tpm
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()

	for p, v := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}

		if err := os.WriteFile(full, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadDMIAndBlock(t *testing.T) {
	t.Parallel()

	root := t.TempDir()
	write(t, root, map[string]string{
		"dmi/sys_vendor":                   "QEMU\n",
		"dmi/product_name":                 "Standard PC (Q35 + ICH9, 2009)\n",
		"dmi/product_serial":               "SN-42\n",
		"dmi/product_uuid":                 "2B0F4A7E-9D1C-4F55-8A43-3C7B2B1E9A10\n",
		"block/vda/size":                   "16777216\n",
		"block/vda/serial":                 "disk-1\n",
		"block/vda/queue/rotational":       "1\n",
		"block/sda/size":                   "2048\n",
		"block/sda/device/model":           "QEMU HARDDISK\n",
		"block/sda/device/wwid":            "naa.5000c500a1b2c3d4\n",
		"block/sda/ro":                     "1\n",
		"block/loop0/size":                 "100\n",
		"block/sr0/size":                   "0\n",
		"block/nvme0n1/size":               "4096\n",
		"block/nvme0n1/wwid":               "eui.0025385b71b0d6a1\n",
		"block/nvme0n1/device/model":       "Samsung SSD 980\n",
		"block/nvme0n1/device/serial":      "S64ANS0T\n",
		"block/dm-0/size":                  "1\n",
		"block/zram0/size":                 "1\n",
		"block/nvme0n1/queue/rotational":   "0\n",
		"block/sda/device/serial_ignored":  "x\n",
		"block/vda/device/model_not_there": "",
	})

	hw, err := sim.ReadDMI(filepath.Join(root, "dmi"))
	if err != nil {
		t.Fatal(err)
	}

	if d := cmp.Diff(sim.Hardware{Manufacturer: "QEMU", Product: "Standard PC (Q35 + ICH9, 2009)", Serial: "SN-42", UUID: "2b0f4a7e-9d1c-4f55-8a43-3c7b2b1e9a10"}, hw); d != "" {
		t.Errorf("ReadDMI (-want +got):\n%s", d)
	}

	disks, err := sim.ReadBlock(filepath.Join(root, "block"))
	if err != nil {
		t.Fatal(err)
	}

	want := []sim.Disk{
		{Name: "nvme0n1", Size: 4096 * 512, Model: "Samsung SSD 980", Serial: "S64ANS0T", WWID: "eui.0025385b71b0d6a1", Transport: "nvme"},
		{Name: "sda", Size: 2048 * 512, Model: "QEMU HARDDISK", WWID: "naa.5000c500a1b2c3d4", Readonly: true, Transport: "scsi"},
		{Name: "sr0", CDROM: true, Transport: "scsi"},
		{Name: "vda", Size: 16777216 * 512, Serial: "disk-1", Rotational: true, Transport: "virtio"},
	}
	if d := cmp.Diff(want, disks); d != "" {
		t.Errorf("ReadBlock (-want +got):\n%s", d)
	}

	if _, err := sim.ReadDMI(filepath.Join(root, "missing")); err == nil {
		t.Error("ReadDMI on a missing directory succeeded")
	}
}

func TestReadFirmware(t *testing.T) {
	t.Parallel()

	const (
		sbVar    = "efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
		setupVar = "efi/efivars/SetupMode-8be4df61-93ca-11d2-aa0d-00e098032b8c"
		stubVar  = "efi/efivars/StubInfo-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
		attrs    = "\x06\x00\x00\x00"
	)

	tests := []struct {
		name    string
		files   map[string]string
		want    sim.Firmware
		wantErr bool
	}{
		{name: "bios", files: map[string]string{"other": ""}, want: sim.Firmware{}},
		{name: "uefi without secureboot variables", files: map[string]string{"efi/efivars/x": ""}, want: sim.Firmware{UEFI: true}},
		{name: "secureboot off", files: map[string]string{sbVar: attrs + "\x00", setupVar: attrs + "\x00"}, want: sim.Firmware{UEFI: true}},
		{name: "setup mode", files: map[string]string{sbVar: attrs + "\x00", setupVar: attrs + "\x01"}, want: sim.Firmware{UEFI: true, SetupMode: true}},
		{name: "secureboot on, UKI", files: map[string]string{sbVar: attrs + "\x01", setupVar: attrs + "\x00", stubVar: attrs + "s\x00"}, want: sim.Firmware{UEFI: true, SecureBoot: true, BootedWithUKI: true}},
		{name: "truncated variable", files: map[string]string{sbVar: "\x06\x00"}, wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			root := t.TempDir()
			write(t, root, tt.files)

			got, err := sim.ReadFirmware(root)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ReadFirmware error = %v, wantErr %v", err, tt.wantErr)
			}

			if err == nil {
				if d := cmp.Diff(tt.want, got); d != "" {
					t.Errorf("ReadFirmware (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestParseCmdline(t *testing.T) {
	t.Parallel()

	yes := true

	tests := []struct {
		name    string
		in      string
		want    sim.Cmdline
		wantErr bool
	}{
		{name: "empty", in: "", want: sim.Cmdline{}},
		{
			name: "all",
			in:   `BOOT_IMAGE=/vmlinuz console=ttyS0 talos.config=http://10.77.0.1:8080/config?mac=52:54:00:77:00:10 talos.events.sink=[fd77::1]:4002 talos.logging.kernel=tcp://10.77.0.1:4001 onramp.sim.uki_fpr="ab cd" onramp.sim.pcr_fpr=ef onramp.sim.uki=1 onramp.sim.state=/mnt/state onramp.sim.listen=:50000 onramp.sim.install_delay=2s` + "\n",
			want: sim.Cmdline{
				ConfigURL: "http://10.77.0.1:8080/config?mac=52:54:00:77:00:10", EventsSink: "[fd77::1]:4002", KmsgURL: "tcp://10.77.0.1:4001",
				UKIFingerprint: "ab cd", PCRFingerprint: "ef", BootedWithUKI: &yes, StateDir: "/mnt/state", ListenAddr: ":50000", InstallDelay: 2 * time.Second,
			},
		},
		{name: "bad bool", in: "onramp.sim.uki=maybe", wantErr: true},
		{name: "bad duration", in: "onramp.sim.install_delay=soon", wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := sim.ParseCmdline(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseCmdline error = %v, wantErr %v", err, tt.wantErr)
			}

			if err == nil {
				if d := cmp.Diff(tt.want, got); d != "" {
					t.Errorf("ParseCmdline (-want +got):\n%s", d)
				}

				back, err := sim.ParseCmdline(strings.Join(got.Args(), " "))
				if err != nil {
					t.Fatalf("ParseCmdline(Args()): %v", err)
				}

				if d := cmp.Diff(got, back); d != "" {
					t.Errorf("Args round trip (-want +got):\n%s", d)
				}
			}
		})
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("talos.config=http://x/y onramp.sim.state=/s")
	f.Add(`onramp.sim.uki_fpr="a b" x="`)

	f.Fuzz(func(t *testing.T, s string) {
		c, err := sim.ParseCmdline(s)
		if err != nil {
			return
		}

		// a value never contains an unquoted separator, nor a quote
		for _, v := range []string{c.ConfigURL, c.EventsSink, c.KmsgURL, c.StateDir, c.ListenAddr} {
			if strings.ContainsAny(v, "\"") {
				t.Fatalf("value %q kept a quote", v)
			}
		}

		// what was parsed renders and parses back unchanged
		back, err := sim.ParseCmdline(strings.Join(c.Args(), " "))
		if err != nil {
			t.Fatalf("ParseCmdline(Args()) of %q: %v", s, err)
		}

		if d := cmp.Diff(c, back); d != "" {
			t.Fatalf("round trip of %q (-want +got):\n%s", s, d)
		}

		// a URL survives a round trip through the command line
		if !strings.ContainsAny(s, "\" \t\n") {
			c2, err := sim.ParseCmdline("talos.config=" + s)
			if err != nil || c2.ConfigURL != s {
				t.Fatalf("talos.config=%q parsed as %q, %v", s, c2.ConfigURL, err)
			}
		}
	})
}

// eventSink is a siderolink EventSinkService collecting machine status stages.
type eventSink struct {
	events.UnimplementedEventSinkServiceServer

	mu     sync.Mutex
	stages []machine.MachineStatusEvent_MachineStage
	bad    []string
}

func (e *eventSink) Publish(_ context.Context, req *events.EventRequest) (*events.EventResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()

	var ev machine.MachineStatusEvent

	url := req.GetData().GetTypeUrl()
	if !strings.HasPrefix(url, "talos/runtime/machine.") || len(req.GetId()) != 20 {
		e.bad = append(e.bad, url+" "+req.GetId())
	}

	if url != "talos/runtime/machine.MachineStatusEvent" {
		return &events.EventResponse{}, nil
	}

	if proto.Unmarshal(req.GetData().GetValue(), &ev) != nil {
		e.bad = append(e.bad, url+" "+req.GetId())
	}

	e.stages = append(e.stages, ev.GetStage())

	return &events.EventResponse{}, nil
}

func (e *eventSink) snapshot() ([]machine.MachineStatusEvent_MachineStage, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()

	return append([]machine.MachineStatusEvent_MachineStage(nil), e.stages...), append([]string(nil), e.bad...)
}

// TestConfigURLInstallsAndSendsEvents: talos.config= is fetched and applied without
// any API call, and the sink sees boot → maintenance → installing → rebooting →
// boot → running.
func TestConfigURLInstallsAndSendsEvents(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)
	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)

	cfgSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(site.ControlPlane) })) //nolint:errcheck
	t.Cleanup(cfgSrv.Close)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	sinkSrv := grpc.NewServer()
	es := &eventSink{}
	events.RegisterEventSinkServiceServer(sinkSrv, es)

	go sinkSrv.Serve(l) //nolint:errcheck

	t.Cleanup(sinkSrv.Stop)

	sink, err := sim.NewSiderolinkSink(l.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { sink.Close() })

	var console bytes.Buffer

	cfg := simtest.Config(t, t.TempDir(), sim.Firmware{UEFI: true, SecureBoot: true}, tpm)
	cfg.ConfigURL = cfgSrv.URL
	cfg.Events = sink
	cfg.Console = &syncWriter{w: &console}

	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	simtest.Start(t, s)
	simtest.WaitStage(t, s, sim.StageRunning, 20*time.Second)

	// The stage changes before its event is published: give the last
	// event a moment to arrive.
	stages, bad := es.snapshot()
	for deadline := time.Now().Add(10 * time.Second); len(stages) < 6 && time.Now().Before(deadline); stages, bad = es.snapshot() {
		time.Sleep(20 * time.Millisecond)
	}
	want := []machine.MachineStatusEvent_MachineStage{
		machine.MachineStatusEvent_BOOTING, machine.MachineStatusEvent_MAINTENANCE, machine.MachineStatusEvent_INSTALLING,
		machine.MachineStatusEvent_REBOOTING, machine.MachineStatusEvent_BOOTING, machine.MachineStatusEvent_RUNNING,
	}

	if d := cmp.Diff(want, stages); d != "" {
		t.Errorf("event stages (-want +got):\n%s", d)
	}

	if len(bad) > 0 {
		t.Errorf("malformed events: %v", bad)
	}

	if !strings.Contains(console.String(), "certificate fingerprint (SHA-256 of SPKI) ") {
		t.Errorf("console lacks the fingerprint line: %q", console.String())
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.w.Write(p)
}

// TestRebootKeepsInstall: a new simulator on the same state directory (a real guest
// reboot) comes up installed, unseals its keys and remembers the bootstrap.
func TestRebootKeepsInstall(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)
	site := simtest.GenerateSite(t, simtest.TPMWithSecureBootCheck)
	dir := t.TempDir()
	fw := sim.Firmware{UEFI: true, SecureBoot: true}

	boot := func() (*sim.Sim, func()) {
		ctx, cancel := context.WithCancel(t.Context())

		s, err := sim.New(simtest.Config(t, dir, fw, tpm))
		if err != nil {
			t.Fatal(err)
		}

		done := make(chan error, 1)

		go func() { done <- s.Run(ctx) }()
		<-s.Ready()

		return s, func() {
			cancel()

			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}

	s, stop := boot()

	m, err := node.Maintenance(t.Context(), s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	if err := m.Apply(t.Context(), site.ControlPlane); err != nil {
		t.Fatal(err)
	}

	m.Close()
	simtest.WaitStage(t, s, sim.StageRunning, 10*time.Second)

	n, err := node.Installed(t.Context(), s.Addr().String(), site.Talosconfig)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := n.Bootstrap(t.Context()); err != nil {
		t.Fatal(err)
	}

	n.Close()
	stop()

	for _, f := range []string{"install.json", "sealed-STATE.json", "sealed-EPHEMERAL.json", "config.enc"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("state file %s: %v", f, err)
		}
	}

	if _, err := os.Stat(filepath.Join(dir, "config.yaml")); err == nil {
		t.Error("config stored in plaintext although STATE is encrypted")
	}

	s, stop = boot()
	defer stop()

	if s.Stage() != sim.StageRunning || s.Fingerprint() != "" {
		t.Fatalf("after reboot: stage %s, maintenance fingerprint %q", s.Stage(), s.Fingerprint())
	}

	n, err = node.Installed(t.Context(), s.Addr().String(), site.Talosconfig)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	vols, err := n.Volumes(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	for _, v := range vols {
		if v.Phase != "ready" || !v.TPMEncrypted() {
			t.Errorf("volume after reboot: %+v", v)
		}
	}

	res, err := n.Bootstrap(t.Context())
	if err != nil || !res.AlreadyBootstrapped {
		t.Errorf("Bootstrap after reboot = %+v, %v; want AlreadyBootstrapped", res, err)
	}
}

// TestCOSIIsReadOnly: API clients read resources with the real machinery client and
// cannot write them.
func TestCOSIIsReadOnly(t *testing.T) {
	t.Parallel()

	s, err := sim.New(simtest.Config(t, t.TempDir(), sim.Firmware{}, nil))
	if err != nil {
		t.Fatal(err)
	}

	simtest.Start(t, s)

	c, err := client.New(t.Context(), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), client.WithEndpoints(s.Addr().String())) //nolint:gosec
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if _, err := c.COSI.Get(t.Context(), hardware.NewSystemInformation(hardware.SystemInformationID).Metadata()); err != nil {
		t.Fatalf("Get SystemInformation: %v", err)
	}

	err = c.COSI.Create(t.Context(), hardware.NewPCCRStatus(7))
	if err == nil || !strings.Contains(err.Error(), "code = PermissionDenied") {
		t.Errorf("Create = %v, want PermissionDenied", err)
	}

	// maintenance mode has no Bootstrap
	if err := c.Bootstrap(t.Context(), &machine.BootstrapRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("Bootstrap in maintenance = %v, want Unimplemented", err)
	}
}

// TestSealUnsealPCR7 exercises the TPM sealing on its own: PCR 0 changes do not
// matter, a PCR 7 change does.
func TestSealUnsealPCR7(t *testing.T) {
	t.Parallel()

	tpm := openTPM(t)

	extend := func(pcr int) {
		sum := sha256.Sum256([]byte("measurement"))
		if _, err := (tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: sum[:]}}},
		}).Execute(tpm); err != nil {
			t.Fatalf("extend PCR %d: %v", pcr, err)
		}
	}

	secret := []byte("0123456789abcdef0123456789abcdef")

	sk, err := sim.SealForTest(tpm, secret, []int{7})
	if err != nil {
		t.Fatalf("seal: %v", err)
	}

	got, err := sim.UnsealForTest(tpm, sk)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("unseal = %q, %v", got, err)
	}

	extend(0)

	if _, err := sim.UnsealForTest(tpm, sk); err != nil {
		t.Fatalf("unseal after PCR 0 change: %v", err)
	}

	extend(7)

	if _, err := sim.UnsealForTest(tpm, sk); err == nil {
		t.Fatal("unseal after PCR 7 change succeeded")
	}
}
