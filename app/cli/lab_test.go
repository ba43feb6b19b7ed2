package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"onramp/app"
	"onramp/lab"
	"onramp/netboot"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"8G", 8 << 30, true}, {"512M", 512 << 20, true}, {"1gib", 1 << 30, true}, {"4096", 4096, true},
		{"10KB", 10 << 10, true}, {"0", 0, true}, {"", 0, false}, {"-1G", 0, false}, {"eightG", 0, false}, {"99999999T", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestLabMachinesAndPlan(t *testing.T) {
	t.Parallel()
	ms := LabMachines(5, lab.FirmwareUEFI, lab.KeysSite, false, 1<<30, true)
	var got []string
	for _, m := range ms {
		got = append(got, m.Name+" "+m.MAC+" "+m.Describe())
	}
	want := []string{
		"lab-1 52:54:00:77:00:01 uefi+tpm",
		"lab-2 52:54:00:77:00:02 bios",
		"lab-3 52:54:00:77:00:03 uefi-secureboot/site+tpm",
		"lab-4 52:54:00:77:00:04 uefi-secureboot/vendor",
		"lab-5 52:54:00:77:00:05 uefi-secureboot/setup+tpm",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mixed machines (-want +got):\n%s", diff)
	}
	// The plan must be one the app's own loader accepts, and must answer
	// each lab machine with its decision and nobody else.
	planJSON, err := lab.PlanJSON(ms)
	if err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(planFile, planJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	plan, err := app.LoadBootPlan(planFile)
	if err != nil {
		t.Fatalf("app rejects the lab's plan: %v", err)
	}
	ctx := context.Background()
	for _, m := range ms {
		mac, _ := net.ParseMAC(m.MAC)
		arch := netboot.ArchUEFIx64
		if m.Firmware == lab.FirmwareBIOS {
			arch = netboot.ArchBIOS
		}
		d, err := plan.Boot(ctx, netboot.Machine{MAC: mac, Arch: arch})
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		wantKind := netboot.BootKernel
		if m.Firmware == lab.FirmwareUEFISecureBoot {
			wantKind = netboot.BootUKI
		}
		if d.Kind != wantKind {
			t.Errorf("%s: decision %s, want %s", m.Name, d.Kind, wantKind)
		}
		if wantKind == netboot.BootKernel && !strings.Contains(strings.Join(d.Cmdline, " "), "console=ttyS0") {
			t.Errorf("%s: cmdline %v lacks the serial console the lab reads", m.Name, d.Cmdline)
		}
	}
	stranger, _ := net.ParseMAC("52:54:00:12:34:56")
	if _, err := plan.Boot(ctx, netboot.Machine{MAC: stranger, Arch: netboot.ArchUEFIx64}); err == nil {
		t.Error("plan answers a MAC that is not in the lab")
	}
}

func TestLabStatusCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if err := Lab(t.Context(), []string{"status", "--data", dir}, &out, &errb, nil); err == nil {
		t.Fatal("status without a lab succeeded")
	}
	m := lab.NewMachine(1, lab.FirmwareUEFISecureBoot, lab.KeysSite, true, 0)
	md := filepath.Join(dir, "machines", m.Name)
	os.MkdirAll(md, 0o755)
	os.WriteFile(filepath.Join(md, "serial.log"), []byte("ONRAMP-LAB: booted ip=10.77.0.100 secureboot=1\nONRAMP-LAB: state=maintenance\n"), 0o644)
	if err := lab.WriteState(dir, &lab.State{PID: os.Getpid(), Running: true, Machines: []lab.MachineState{{Machine: m, Dir: md}}}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := Lab(t.Context(), []string{"status", "--data", dir}, &out, &errb, nil); err != nil {
		t.Fatal(err)
	}
	want := "NAME   MAC                FIRMWARE                  STATE\n" +
		"lab-1  52:54:00:77:00:01  uefi-secureboot/site+tpm  maintenance\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("status output (-want +got):\n%s", diff)
	}
	if err := Lab(t.Context(), []string{"sideways"}, &out, &errb, nil); err == nil {
		t.Error("unknown subcommand accepted")
	}
	if err := Lab(t.Context(), []string{"up", "--machines", "0"}, &out, &errb, nil); err == nil {
		t.Error("--machines 0 accepted")
	}
	if err := Lab(t.Context(), []string{"up", "--firmware", "coreboot"}, &out, &errb, nil); err == nil {
		t.Error("--firmware coreboot accepted")
	}
}

// TestLabUpStatusDown runs `lab up` with one BIOS machine and no netboot
// server, reads `lab status` while it runs, then stops it with the context
// (as SIGINT does) and checks that the namespace is gone and status says off.
func TestLabUpStatusDown(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, b := range []string{"qemu-system-x86_64", "swtpm", "ip", "apt-get", "objcopy", "sbsign"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed: %v", b, err)
		}
	}
	cache := os.Getenv("ONRAMP_LAB_CACHE")
	if cache == "" {
		_, file, _, _ := runtime.Caller(0)
		cache = filepath.Join(filepath.Dir(file), "..", "..", "build", "lab-cache")
	}
	data := t.TempDir()
	ns := fmt.Sprintf("obl-t%06x", rand.IntN(1<<24))
	t.Cleanup(func() { _ = lab.Down(context.Background(), data, ns) })
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var upOut, upErr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Lab(ctx, []string{"up", "--machines", "1", "--firmware", "bios", "--disk", "64M",
			"--data", data, "--cache", cache, "--netns", ns, "--simulator", "none"}, &upOut, &upErr, nil)
	}()
	var status string
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) && !strings.Contains(status, "lab-1") {
		select {
		case err := <-done:
			t.Fatalf("lab up returned early: %v\n%s", err, upErr.String())
		case <-time.After(500 * time.Millisecond):
		}
		var out bytes.Buffer
		if Lab(ctx, []string{"status", "--data", data}, &out, io.Discard, nil) == nil {
			status = out.String()
		}
	}
	if !strings.Contains(status, "lab-1  52:54:00:77:00:01  bios") || strings.Contains(status, "not running") {
		t.Fatalf("status while up:\n%s\nup stderr:\n%s", status, upErr.String())
	}
	if _, err := os.Stat("/run/netns/" + ns); err != nil {
		t.Errorf("namespace %s missing while up: %v", ns, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("lab up: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("lab up did not stop within 60 s")
	}
	if _, err := os.Stat("/run/netns/" + ns); err == nil {
		t.Errorf("namespace %s left after up returned", ns)
	}
	var out bytes.Buffer
	if err := Lab(context.Background(), []string{"status", "--data", data}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "lab not running") || !strings.Contains(out.String(), "off") {
		t.Errorf("status after up:\n%s", out.String())
	}
	if !strings.Contains(upOut.String(), "lab up: 1 machines") {
		t.Errorf("up output:\n%s", upOut.String())
	}
	// `down` on a stopped lab is a no-op that succeeds.
	if err := Lab(context.Background(), []string{"down", "--data", data}, io.Discard, io.Discard, nil); err != nil {
		t.Errorf("lab down: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of `lab up`.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
