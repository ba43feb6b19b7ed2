package lab

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"onramp/lab/kit"
	"onramp/netboot"
)

// Decision is what Onramp's Booter should answer for a lab machine: the
// signed UKI for uefi-secureboot machines (under SecureBoot iPXE can only
// hand over a signed PE image, and the UKI's embedded command line wins),
// and kernel + initramfs with the lab's command line plus extra for uefi
// and bios. Paths are relative to the assets directory the lab installs
// (Lab.AssetsDir).
func (m Machine) Decision(extra ...string) netboot.Decision {
	if m.Firmware == FirmwareUEFISecureBoot {
		return netboot.Decision{Kind: netboot.BootUKI, UKI: kit.AssetUKISigned}
	}
	return netboot.Decision{
		Kind:    netboot.BootKernel,
		Kernel:  kit.AssetVmlinuz,
		Initrd:  kit.AssetInitramfs,
		Cmdline: append(strings.Fields(kit.DefaultCmdline), extra...),
	}
}

// planDecision and planSpec mirror app.PlanSpec's JSON (the boot plan file
// `onramp netboot --plan` reads); app/cli's tests load PlanJSON's output
// with app.LoadBootPlan so the two cannot drift apart.
type planDecision struct {
	Kind    netboot.DecisionKind `json:"kind"`
	Kernel  string               `json:"kernel,omitempty"`
	Initrd  string               `json:"initrd,omitempty"`
	UKI     string               `json:"uki,omitempty"`
	Cmdline []string             `json:"cmdline,omitempty"`
}

type planSpec struct {
	Machines  map[string]planDecision `json:"machines"`
	Allowlist bool                    `json:"allowlist"`
}

// PlanJSON is the boot plan for the lab's machines: each MAC gets its
// Decision, and nothing else on the lab bridge is answered (allowlist).
func PlanJSON(ms []Machine) ([]byte, error) {
	spec := planSpec{Machines: map[string]planDecision{}, Allowlist: true}
	for _, m := range ms {
		hw, err := net.ParseMAC(m.MAC)
		if err != nil {
			return nil, fmt.Errorf("boot plan: machine %s: %w", m.Name, err)
		}
		d := m.Decision()
		spec.Machines[hw.String()] = planDecision{Kind: d.Kind, Kernel: d.Kernel, Initrd: d.Initrd, UKI: d.UKI, Cmdline: d.Cmdline}
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("boot plan: %w", err)
	}
	return append(b, '\n'), nil
}
