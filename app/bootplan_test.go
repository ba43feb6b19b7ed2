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
