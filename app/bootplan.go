package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"onramp/netboot"
)

// BootPlan is the app's answer to "what does this machine boot?": a default
// per firmware family, per-machine overrides by MAC, and an optional
// allowlist. It implements netboot.Booter. It is loaded from a JSON file
// (`onramp netboot --plan FILE`, the virtual lab writes one) or built by the
// UI as the visit goes on.
type BootPlan struct {
	mu   sync.RWMutex
	spec PlanSpec
}

// PlanSpec is the serialised form of a BootPlan.
type PlanSpec struct {
	// BIOS and UEFI are the defaults by firmware family; UEFI applies to
	// every EFI architecture (PXE and HTTP boot).
	BIOS *PlanDecision `json:"bios,omitempty"`
	UEFI *PlanDecision `json:"uefi,omitempty"`
	// Machines overrides the defaults per MAC (lower-case, colon-separated).
	Machines map[string]PlanDecision `json:"machines,omitempty"`
	// Allowlist: when true, only MACs in Machines get a boot answer.
	Allowlist bool `json:"allowlist,omitempty"`
}

// PlanDecision is the JSON shape of a netboot.Decision.
type PlanDecision struct {
	Kind    netboot.DecisionKind `json:"kind"`
	Kernel  string               `json:"kernel,omitempty"`
	Initrd  string               `json:"initrd,omitempty"`
	UKI     string               `json:"uki,omitempty"`
	Cmdline []string             `json:"cmdline,omitempty"`
}

func (d PlanDecision) decision() netboot.Decision {
	return netboot.Decision{Kind: d.Kind, Kernel: d.Kernel, Initrd: d.Initrd, UKI: d.UKI, Cmdline: d.Cmdline}
}

func (d PlanDecision) validate(where string) error {
	switch d.Kind {
	case netboot.BootKernel:
		if d.Kernel == "" || d.Initrd == "" {
			return fmt.Errorf("%s: kind kernel needs kernel and initrd", where)
		}
	case netboot.BootUKI:
		if d.UKI == "" {
			return fmt.Errorf("%s: kind uki needs uki", where)
		}
	case netboot.BootLocal:
	default:
		return fmt.Errorf("%s: kind %q is not one of kernel, uki, local", where, d.Kind)
	}
	return nil
}

// Validate reports the first problem with a field path.
func (s PlanSpec) Validate() error {
	if s.BIOS != nil {
		if err := s.BIOS.validate("bios"); err != nil {
			return err
		}
	}
	if s.UEFI != nil {
		if err := s.UEFI.validate("uefi"); err != nil {
			return err
		}
	}
	for mac, d := range s.Machines {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return fmt.Errorf("machines[%q]: not a MAC address", mac)
		}
		if hw.String() != mac {
			return fmt.Errorf("machines[%q]: write the MAC as %s", mac, hw)
		}
		if err := d.validate(fmt.Sprintf("machines[%q]", mac)); err != nil {
			return err
		}
	}
	return nil
}

// NewBootPlan returns a plan from a validated spec.
func NewBootPlan(spec PlanSpec) (*BootPlan, error) {
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("boot plan: %w", err)
	}
	return &BootPlan{spec: spec}, nil
}

// LoadBootPlan reads a plan file.
func LoadBootPlan(path string) (*BootPlan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load boot plan: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var spec PlanSpec
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("load boot plan %s: %w", path, err)
	}
	p, err := NewBootPlan(spec)
	if err != nil {
		return nil, fmt.Errorf("load boot plan %s: %w", path, err)
	}
	return p, nil
}

// Spec returns a copy of the plan's spec.
func (p *BootPlan) Spec() PlanSpec {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.spec
}

// Boot implements netboot.Booter.
func (p *BootPlan) Boot(_ context.Context, m netboot.Machine) (netboot.Decision, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if d, ok := p.spec.Machines[m.MAC.String()]; ok {
		return d.decision(), nil
	}
	if p.spec.Allowlist {
		return netboot.Decision{}, netboot.ErrNotApproved
	}
	var d *PlanDecision
	if m.Arch == netboot.ArchBIOS {
		d = p.spec.BIOS
	} else {
		d = p.spec.UEFI
	}
	if d == nil {
		// Nothing planned for this firmware: boot iPXE, then tell it to
		// leave network boot (the machine falls through to its disk).
		return netboot.Decision{Kind: netboot.BootLocal}, nil
	}
	return d.decision(), nil
}
