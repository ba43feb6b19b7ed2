package app

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"onramp/lab"
	"onramp/netboot"
	"onramp/talos/discover"
)

func TestMarkEnroll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sb := NewSecureBoot(dir, "", nil, nil, NewBus())
	mac := "52:54:00:77:00:3A"
	hw, _ := net.ParseMAC(mac)

	if _, err := sb.MarkEnroll(EnrollMachineRequest{MAC: mac}); err == nil || !strings.Contains(err.Error(), "build the enrollment image first") {
		t.Fatalf("MarkEnroll without an image: %v", err)
	}
	iso := filepath.Join(dir, "assets", enrollISOAsset)
	mustOK(t, os.MkdirAll(filepath.Dir(iso), 0o755))
	mustOK(t, os.WriteFile(iso, []byte("CD001"), 0o644))
	if _, err := sb.MarkEnroll(EnrollMachineRequest{MAC: "not-a-mac"}); err == nil {
		t.Fatal("MarkEnroll accepted a bad MAC")
	}

	// An existing plan: its defaults and other machines are kept.
	uki := PlanDecision{Kind: netboot.BootUKI, UKI: "talos/uki.efi"}
	mustOK(t, SaveBootPlan(sb.planPath(), PlanSpec{UEFI: &uki, Machines: map[string]PlanDecision{
		"52:54:00:77:00:3a": uki, "52:54:00:77:00:3b": uki}}))
	m, err := sb.MarkEnroll(EnrollMachineRequest{MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	if m.MAC != "52:54:00:77:00:3a" || !m.Enroll || m.URL != "/assets/secureboot/enroll.iso" || m.Replaced == nil || m.Replaced.Kind != netboot.BootUKI {
		t.Errorf("mark = %+v", m)
	}
	plan, err := LoadBootPlan(sb.planPath())
	if err != nil {
		t.Fatal(err)
	}
	marked := EnrollDecision()
	marked.Then = &uki // put back when the mark is taken back
	want := PlanSpec{UEFI: &uki, Machines: map[string]PlanDecision{"52:54:00:77:00:3a": marked, "52:54:00:77:00:3b": uki}}
	if diff := cmp.Diff(want, plan.Spec()); diff != "" {
		t.Errorf("plan after MarkEnroll (-want +got):\n%s", diff)
	}
	d, err := plan.Boot(t.Context(), netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIHTTPx64})
	if err != nil || d.Kind != netboot.BootEnroll || d.ISO != enrollISOAsset {
		t.Errorf("the marked machine boots %+v, %v", d, err)
	}

	if marks, err := sb.EnrollMarks(); err != nil || len(marks) != 1 || marks[0].MAC != "52:54:00:77:00:3a" || marks[0].URL != "/assets/secureboot/enroll.iso" {
		t.Errorf("EnrollMarks = %+v, %v", marks, err)
	}

	// Taken back: the machine falls to the default; twice is harmless.
	m, err = sb.UnmarkEnroll(EnrollMachineRequest{MAC: mac})
	if err != nil || m.Enroll || m.Replaced == nil || m.Replaced.Kind != netboot.BootEnroll {
		t.Fatalf("UnmarkEnroll = %+v, %v", m, err)
	}
	if m, err = sb.UnmarkEnroll(EnrollMachineRequest{MAC: mac}); err != nil || m.Replaced != nil || !strings.Contains(m.Note, "nothing changed") {
		t.Errorf("second UnmarkEnroll = %+v, %v", m, err)
	}
	if marks, err := sb.EnrollMarks(); err != nil || len(marks) != 0 {
		t.Errorf("EnrollMarks after UnmarkEnroll = %+v, %v", marks, err)
	}
	plan, _ = LoadBootPlan(sb.planPath())
	if d, _ := plan.Boot(t.Context(), netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIx64}); d.Kind != netboot.BootUKI {
		t.Errorf("after UnmarkEnroll the machine boots %+v, want the UEFI default", d)
	}
	if diff := cmp.Diff(PlanSpec{UEFI: &uki, Machines: map[string]PlanDecision{"52:54:00:77:00:3a": uki, "52:54:00:77:00:3b": uki}}, plan.Spec()); diff != "" {
		t.Errorf("plan after UnmarkEnroll: its own entry is not back (-want +got):\n%s", diff)
	}
}

// A marked machine that discovery then reads with SecureBoot on has
// enrolled: its mark goes by itself, and under the allowlist it stays
// approved (the entry from before the mark comes back). One that reports
// SecureBoot off keeps its mark, and so does a machine read before it was
// marked. The bus says so (the audit trail too, with a vault).
func TestEnrollMarkTakenBackWhenSecureBootOn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bus := NewBus()
	sb := NewSecureBoot(dir, "", nil, nil, bus)
	machines := NewMachines(bus)
	machines.onMaintenance = sb.maintenanceSeen
	iso := filepath.Join(dir, "assets", enrollISOAsset)
	mustOK(t, os.MkdirAll(filepath.Dir(iso), 0o755))
	mustOK(t, os.WriteFile(iso, []byte("CD001"), 0o644))
	kernel := PlanDecision{Kind: netboot.BootKernel, Kernel: "talos/vmlinuz", Initrd: "talos/initramfs.xz"}
	const a, b = "52:54:00:77:00:4a", "52:54:00:77:00:4b"
	mustOK(t, SaveBootPlan(sb.planPath(), PlanSpec{Allowlist: true, Machines: map[string]PlanDecision{a: kernel, b: kernel}}))
	for _, mac := range []string{a, b} {
		if _, err := sb.MarkEnroll(EnrollMachineRequest{MAC: mac}); err != nil {
			t.Fatal(err)
		}
	}
	events, stop := bus.Subscribe()
	defer stop()

	seen := func(mac, state string) {
		machines.Emit(netboot.Event{Time: time.Now(), Kind: discover.EventMaintenance, MAC: mac, IP: "10.77.0.50",
			Attrs: map[string]string{"secureBoot": state, "serial": "SN-" + mac[len(mac)-2:]}})
	}
	seen(b, "off") // not enrolled yet: the mark stays
	seen(a, "on")  // enrolled
	plan, err := LoadBootPlan(sb.planPath())
	if err != nil {
		t.Fatal(err)
	}
	markedB := EnrollDecision()
	markedB.Then = &kernel
	if diff := cmp.Diff(PlanSpec{Allowlist: true, Machines: map[string]PlanDecision{a: kernel, b: markedB}}, plan.Spec()); diff != "" {
		t.Errorf("plan after the readings (-want +got):\n%s", diff)
	}
	hw, _ := net.ParseMAC(a)
	if d, err := plan.Boot(t.Context(), netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIx64}); err != nil || d.Kind != netboot.BootKernel {
		t.Errorf("the enrolled machine boots %+v, %v; want Talos' kernel, still approved", d, err)
	}
	if marks, _ := sb.EnrollMarks(); len(marks) != 1 || marks[0].MAC != b {
		t.Errorf("marks left: %+v, want only %s", marks, b)
	}
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case msg := <-events:
			if m, ok := msg.Data.(EnrollMark); ok && msg.Name == "secureboot:marks" {
				got = m.MAC == a && !m.Enroll
			}
		case <-deadline:
			t.Fatal("no secureboot:marks event for the enrolled machine")
		}
	}
	// Seen with SecureBoot on again: nothing more to take back.
	seen(a, "on")
	if marks, _ := sb.EnrollMarks(); len(marks) != 1 {
		t.Errorf("marks after a second reading: %+v", marks)
	}
}

func TestMarkEnrollWithoutPlan(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sb := NewSecureBoot(dir, "", nil, nil, NewBus())
	iso := filepath.Join(dir, "assets", enrollISOAsset)
	mustOK(t, os.MkdirAll(filepath.Dir(iso), 0o755))
	mustOK(t, os.WriteFile(iso, []byte("CD001"), 0o644))
	if _, err := sb.MarkEnroll(EnrollMachineRequest{MAC: "52-54-00-77-00-3c"}); err != nil {
		t.Fatal(err)
	}
	plan, err := LoadBootPlan(sb.planPath())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PlanSpec{Machines: map[string]PlanDecision{"52:54:00:77:00:3c": EnrollDecision()}}, plan.Spec()); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

// TestPlanFileReload: a running netboot server's Booter follows the plan
// file as the UI rewrites it, and keeps the last good plan when the file
// turns invalid.
func TestPlanFileReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bootplan.json")
	uki := PlanDecision{Kind: netboot.BootUKI, UKI: "u.efi"}
	mustOK(t, SaveBootPlan(path, PlanSpec{UEFI: &uki}))
	pf, err := OpenPlanFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC("52:54:00:77:00:3d")
	m := netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIx64}
	boots := func() netboot.DecisionKind {
		d, err := pf.Boot(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		return d.Kind
	}
	if k := boots(); k != netboot.BootUKI {
		t.Fatalf("boots %s", k)
	}
	mustOK(t, SaveBootPlan(path, PlanSpec{UEFI: &uki, Machines: map[string]PlanDecision{hw.String(): EnrollDecision()}}))
	waitEnroll(t, 5*time.Second, func() bool { return boots() == netboot.BootEnroll })
	if pf.LastError() != nil {
		t.Errorf("LastError = %v", pf.LastError())
	}
	mustOK(t, os.WriteFile(path, []byte(`{"uefi":{"kind":"floppy"}}`), 0o644))
	waitEnroll(t, 5*time.Second, func() bool { boots(); return pf.LastError() != nil })
	if k := boots(); k != netboot.BootEnroll {
		t.Errorf("after an invalid rewrite boots %s, want the last good plan's enroll", k)
	}
	if err := SaveBootPlan(path, PlanSpec{BIOS: &PlanDecision{Kind: netboot.BootEnroll, ISO: "e.iso"}}); err == nil {
		t.Error("SaveBootPlan wrote an invalid plan")
	}
}

func waitEnroll(t *testing.T, max time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(max); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("condition not met within %s", max)
}

// TestLabEnrollPlanLoads: the lab's enrollment plan (lab.EnrollPlanJSON,
// what the lab hands `onramp netboot`) is one the app's loader accepts.
func TestLabEnrollPlanLoads(t *testing.T) {
	t.Parallel()
	ms := []lab.Machine{lab.NewMachine(61, lab.FirmwareUEFISecureBoot, lab.KeysSetup, false, 0)}
	b, err := lab.EnrollPlanJSON(ms)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	mustOK(t, os.WriteFile(path, b, 0o644))
	plan, err := LoadBootPlan(path)
	if err != nil {
		t.Fatalf("app rejects the lab's enrollment plan: %v", err)
	}
	hw, _ := net.ParseMAC(ms[0].MAC)
	d, err := plan.Boot(t.Context(), netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIHTTPx64})
	if err != nil || d.Kind != netboot.BootEnroll || d.ISO != lab.AssetEnrollISO || lab.AssetEnrollISO != enrollISOAsset {
		t.Errorf("lab machine boots %+v, %v; want enroll %s", d, err, enrollISOAsset)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
