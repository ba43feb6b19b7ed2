package app

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"onramp/netboot"
)

func TestBootPlan(t *testing.T) {
	t.Parallel()
	kernel := PlanDecision{Kind: netboot.BootKernel, Kernel: "k", Initrd: "i", Cmdline: []string{"talos.platform=metal"}}
	uki := PlanDecision{Kind: netboot.BootUKI, UKI: "u.efi"}
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	tests := []struct {
		name    string
		spec    PlanSpec
		m       netboot.Machine
		want    netboot.Decision
		wantErr error
	}{
		{"bios default", PlanSpec{BIOS: &kernel, UEFI: &uki}, netboot.Machine{MAC: mac("52:54:00:00:00:01"), Arch: netboot.ArchBIOS}, kernel.decision(), nil},
		{"uefi default", PlanSpec{BIOS: &kernel, UEFI: &uki}, netboot.Machine{MAC: mac("52:54:00:00:00:01"), Arch: netboot.ArchUEFIx64}, uki.decision(), nil},
		{"http boot is uefi", PlanSpec{UEFI: &uki}, netboot.Machine{MAC: mac("52:54:00:00:00:01"), Arch: netboot.ArchUEFIHTTPx64}, uki.decision(), nil},
		{"per machine wins", PlanSpec{UEFI: &uki, Machines: map[string]PlanDecision{"52:54:00:00:00:02": kernel}}, netboot.Machine{MAC: mac("52:54:00:00:00:02"), Arch: netboot.ArchUEFIx64}, kernel.decision(), nil},
		{"allowlist refuses unknown", PlanSpec{UEFI: &uki, Allowlist: true}, netboot.Machine{MAC: mac("52:54:00:00:00:03"), Arch: netboot.ArchUEFIx64}, netboot.Decision{}, netboot.ErrNotApproved},
		{"nothing planned boots local", PlanSpec{}, netboot.Machine{MAC: mac("52:54:00:00:00:04"), Arch: netboot.ArchBIOS}, netboot.Decision{Kind: netboot.BootLocal}, nil},
		{"enroll per machine, pxe", PlanSpec{UEFI: &uki, Machines: map[string]PlanDecision{"52:54:00:00:00:05": EnrollDecision()}, Allowlist: true},
			netboot.Machine{MAC: mac("52:54:00:00:00:05"), Arch: netboot.ArchUEFIx64}, netboot.Decision{Kind: netboot.BootEnroll, ISO: "secureboot/enroll.iso"}, nil},
		{"enroll per machine, http boot", PlanSpec{UEFI: &uki, Machines: map[string]PlanDecision{"52:54:00:00:00:05": EnrollDecision()}},
			netboot.Machine{MAC: mac("52:54:00:00:00:05"), Arch: netboot.ArchUEFIHTTPx64}, netboot.Decision{Kind: netboot.BootEnroll, ISO: "secureboot/enroll.iso"}, nil},
		{"enroll is not the neighbour's", PlanSpec{UEFI: &uki, Machines: map[string]PlanDecision{"52:54:00:00:00:05": EnrollDecision()}},
			netboot.Machine{MAC: mac("52:54:00:00:00:06"), Arch: netboot.ArchUEFIx64}, uki.decision(), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewBootPlan(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Boot(t.Context(), tc.m)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadBootPlanErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		`{"uefi":{"kind":"kernel","kernel":"k"}}`:             "uefi: kind kernel needs kernel and initrd",
		`{"bios":{"kind":"floppy"}}`:                          `bios: kind "floppy"`,
		`{"machines":{"zz:zz":{"kind":"local"}}}`:             "not a MAC address",
		`{"machines":{"52:54:00:AA:00:01":{"kind":"local"}}}`: "write the MAC as 52:54:00:aa:00:01",
		`{"uefi":{"kind":"uki","uki":"x"},"surprise":true}`:   "unknown field",
		`{"uefi":`: "unexpected EOF",
		`{"machines":{"52:54:00:aa:00:01":{"kind":"enroll"}}}`:                     "kind enroll needs iso",
		`{"machines":{"52:54:00:aa:00:01":{"kind":"enroll","iso":"../x.iso"}}}`:    "must be a relative path",
		`{"machines":{"52:54:00:aa:00:01":{"kind":"enroll","iso":"/abs/x.iso"}}}`:  "must be a relative path",
		`{"machines":{"52:54:00:aa:00:01":{"kind":"enroll","iso":"k/vmlinuz"}}}`:   "ending in .iso",
		`{"uefi":{"kind":"enroll","iso":"secureboot/enroll.iso"}}`:                 "uefi: kind enroll is set per machine",
		`{"bios":{"kind":"enroll","iso":"secureboot/enroll.iso"}}`:                 "bios: kind enroll needs UEFI",
		`{"machines":{"52:54:00:aa:00:01":{"kind":"enroll","iso":"e.iso","x":1}}}`: "unknown field",
	}
	for body, want := range tests {
		p := filepath.Join(t.TempDir(), "plan.json")
		os.WriteFile(p, []byte(body), 0o600)
		_, err := LoadBootPlan(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to contain %q", body, err, want)
		}
	}
}

func TestLoadBootPlanEnroll(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "plan.json")
	body := `{"machines":{"52:54:00:aa:00:01":{"kind":"enroll","iso":"secureboot/enroll.iso"}},"allowlist":true}`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	plan, err := LoadBootPlan(p)
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC("52:54:00:aa:00:01")
	got, err := plan.Boot(t.Context(), netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIHTTPx64})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(netboot.Decision{Kind: netboot.BootEnroll, ISO: "secureboot/enroll.iso"}, got); diff != "" {
		t.Fatalf("decision (-want +got):\n%s", diff)
	}
}

func TestBootPlanSetMachine(t *testing.T) {
	t.Parallel()
	uki := PlanDecision{Kind: netboot.BootUKI, UKI: "u.efi"}
	hw, _ := net.ParseMAC("52:54:00:aa:00:02")
	plan, err := NewBootPlan(PlanSpec{Machines: map[string]PlanDecision{hw.String(): uki}, Allowlist: true})
	if err != nil {
		t.Fatal(err)
	}
	before := plan.Spec()
	prev, had, err := plan.SetMachine(hw, EnrollDecision())
	if err != nil || !had || prev.Kind != netboot.BootUKI {
		t.Fatalf("SetMachine = %+v, %v, %v; want the UKI entry back", prev, had, err)
	}
	if before.Machines[hw.String()].Kind != netboot.BootUKI {
		t.Error("SetMachine changed a Spec() copy handed out before")
	}
	d, err := plan.Boot(t.Context(), netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIx64})
	if err != nil || d.Kind != netboot.BootEnroll || d.ISO != "secureboot/enroll.iso" {
		t.Fatalf("after SetMachine: %+v, %v", d, err)
	}
	if _, _, err := plan.SetMachine(hw, PlanDecision{Kind: netboot.BootEnroll}); err == nil {
		t.Error("SetMachine accepted enroll without an ISO")
	}
	if _, _, err := plan.SetMachine(net.HardwareAddr{1, 2}, uki); err == nil {
		t.Error("SetMachine accepted a 2-byte MAC")
	}
	if d, _ := plan.Boot(t.Context(), netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIx64}); d.Kind != netboot.BootEnroll {
		t.Errorf("a refused SetMachine changed the plan: %+v", d)
	}
	if !plan.ClearMachine(hw) || plan.ClearMachine(hw) {
		t.Error("ClearMachine: want true once, then false")
	}
	if _, err := plan.Boot(t.Context(), netboot.Machine{MAC: hw, Arch: netboot.ArchUEFIx64}); !errors.Is(err, netboot.ErrNotApproved) {
		t.Errorf("after ClearMachine with the allowlist on: err = %v, want ErrNotApproved", err)
	}
}
