package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

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
	// ISO is the enrollment image for kind enroll, relative to the assets
	// root (SecureBoot.BuildEnrollmentImage writes secureboot/enroll.iso).
	ISO string `json:"iso,omitempty"`
	// Then, on an enroll entry, is the machine's own entry the mark
	// replaced: it is put back when the mark is taken back, so a machine
	// approved under the allowlist stays approved after enrolling.
	Then *PlanDecision `json:"then,omitempty"`
}

// EnrollDecision is the plan entry that boots a machine into SecureBoot key
// enrollment with the image SecureBoot.BuildEnrollmentImage writes.
func EnrollDecision() PlanDecision {
	return PlanDecision{Kind: netboot.BootEnroll, ISO: enrollISOAsset}
}

func (d PlanDecision) decision() netboot.Decision {
	return netboot.Decision{Kind: d.Kind, Kernel: d.Kernel, Initrd: d.Initrd, UKI: d.UKI, Cmdline: d.Cmdline, ISO: d.ISO}
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
	case netboot.BootEnroll:
		if d.ISO == "" {
			return fmt.Errorf("%s: kind enroll needs iso", where)
		}
		if !fs.ValidPath(d.ISO) || d.ISO == "." || !strings.HasSuffix(strings.ToLower(d.ISO), ".iso") {
			return fmt.Errorf("%s: iso %q must be a relative path under the assets directory ending in .iso", where, d.ISO)
		}
		if d.Then != nil {
			if d.Then.Kind == netboot.BootEnroll || d.Then.Then != nil {
				return fmt.Errorf("%s.then: what follows enrollment is a kernel, uki or local boot", where)
			}
			if err := d.Then.validate(where + ".then"); err != nil {
				return err
			}
		}
	case netboot.BootLocal:
	default:
		return fmt.Errorf("%s: kind %q is not one of kernel, uki, local, enroll", where, d.Kind)
	}
	if d.Kind != netboot.BootEnroll && d.Then != nil {
		return fmt.Errorf("%s: then is only for kind enroll", where)
	}
	return nil
}

// Validate reports the first problem with a field path.
func (s PlanSpec) Validate() error {
	if s.BIOS != nil {
		if err := s.BIOS.validate("bios"); err != nil {
			return err
		}
		if s.BIOS.Kind == netboot.BootEnroll {
			return errors.New("bios: kind enroll needs UEFI firmware; legacy BIOS has no SecureBoot")
		}
	}
	if s.UEFI != nil {
		if err := s.UEFI.validate("uefi"); err != nil {
			return err
		}
		// Network boot cannot tell a machine in setup mode from one
		// already enrolled, and an enrolled machine that boots the image
		// again only stops at systemd-boot's menu: enrollment is chosen
		// machine by machine ("Enroll keys on this machine"), and taken
		// back once done.
		if s.UEFI.Kind == netboot.BootEnroll {
			return errors.New("uefi: kind enroll is set per machine (machines), not as the default for every UEFI machine")
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

// SetMachine sets (or replaces) the decision for one machine, e.g. "Enroll
// keys on this machine" from the UI, and returns the previous one (ok=false
// when there was none). The plan is unchanged when d is invalid.
func (p *BootPlan) SetMachine(mac net.HardwareAddr, d PlanDecision) (prev PlanDecision, ok bool, err error) {
	if len(mac) != 6 {
		return PlanDecision{}, false, fmt.Errorf("set boot plan for %q: not an Ethernet MAC", mac)
	}
	key := mac.String()
	if err := d.validate(fmt.Sprintf("machines[%q]", key)); err != nil {
		return PlanDecision{}, false, fmt.Errorf("set boot plan for %s: %w", key, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	prev, ok = p.spec.Machines[key]
	machines := make(map[string]PlanDecision, len(p.spec.Machines)+1)
	for k, v := range p.spec.Machines {
		machines[k] = v
	}
	machines[key] = d
	p.spec.Machines = machines // copy on write: Spec() hands out the old map
	return prev, ok, nil
}

// ClearMachine removes a machine's own decision; it then gets the plan's
// default (or, with the allowlist on, no answer). It reports whether there
// was one.
func (p *BootPlan) ClearMachine(mac net.HardwareAddr) bool {
	key := mac.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.spec.Machines[key]; !ok {
		return false
	}
	machines := make(map[string]PlanDecision, len(p.spec.Machines))
	for k, v := range p.spec.Machines {
		if k != key {
			machines[k] = v
		}
	}
	p.spec.Machines = machines
	return true
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

// SaveBootPlan validates spec and writes it to path atomically (a temporary
// file in the same directory, then rename), so a netboot server re-reading
// the file never sees half of it.
func SaveBootPlan(path string, spec PlanSpec) error {
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("save boot plan: %w", err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("save boot plan: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".bootplan-*.json")
	if err != nil {
		return fmt.Errorf("save boot plan: %w", err)
	}
	defer os.Remove(f.Name()) // after a successful rename this finds nothing
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("save boot plan: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save boot plan: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save boot plan: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save boot plan: %w", err)
	}
	return nil
}

// PlanFile is a netboot.Booter backed by a plan file that it re-reads when
// the file changes (size, modification time or inode), checked at most once
// per PlanFileRecheck. `onramp netboot` runs as a child of the UI process;
// this is how "Enroll keys on this machine" reaches a running server. A
// file that becomes invalid keeps the last good plan (LastError says why).
type PlanFile struct {
	path string

	mu      sync.Mutex
	plan    *BootPlan
	stamp   fileStamp
	checked time.Time
	lastErr error
}

// PlanFileRecheck bounds how often PlanFile looks at its file: a burst of
// DHCP packets costs at most one stat per interval.
const PlanFileRecheck = time.Second

type fileStamp struct {
	size  int64
	mod   time.Time
	inode uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mod: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.inode = st.Ino
	}
	return s
}

// OpenPlanFile loads path; it must be a valid plan now.
func OpenPlanFile(path string) (*PlanFile, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open boot plan: %w", err)
	}
	p, err := LoadBootPlan(path)
	if err != nil {
		return nil, err
	}
	return &PlanFile{path: path, plan: p, stamp: stampOf(fi), checked: time.Now()}, nil
}

// current returns the plan, re-reading the file if it changed.
func (f *PlanFile) current() *BootPlan {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.checked) < PlanFileRecheck {
		return f.plan
	}
	f.checked = now
	fi, err := os.Stat(f.path)
	if err != nil {
		f.lastErr = fmt.Errorf("reload boot plan: %w", err)
		return f.plan
	}
	if st := stampOf(fi); st != f.stamp {
		p, err := LoadBootPlan(f.path)
		if err != nil {
			f.lastErr = fmt.Errorf("reload boot plan (keeping the previous one): %w", err)
			return f.plan
		}
		f.plan, f.stamp, f.lastErr = p, st, nil
	}
	return f.plan
}

// Boot implements netboot.Booter with the file's current plan.
func (f *PlanFile) Boot(ctx context.Context, m netboot.Machine) (netboot.Decision, error) {
	return f.current().Boot(ctx, m)
}

// Spec returns the current plan's spec.
func (f *PlanFile) Spec() PlanSpec { return f.current().Spec() }

// LastError says why the last reload failed; nil when the file in use is
// the file on disk.
func (f *PlanFile) LastError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}
