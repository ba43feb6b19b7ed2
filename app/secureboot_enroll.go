package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"onramp/netboot"
)

// "Enroll keys on this machine": the technician marks a discovered machine,
// and its next network boot brings up the enrollment image instead of
// Talos. The mark is a per-MAC entry of kind enroll in the boot plan file
// the netboot server reads (<dataDir>/bootplan.json; a running server
// re-reads it when it changes, see PlanFile). It is per machine on purpose:
// network boot cannot tell a machine in setup mode from one already
// enrolled, and an enrolled machine that boots the image again only stops at
// systemd-boot's menu. Once the machine has enrolled (it resets and comes
// back with SecureBoot on), the mark is taken back by itself when
// discovery reports SecureBoot on (maintenanceSeen), or by UnmarkEnroll;
// either way the machine's own entry from before the mark comes back.

// EnrollMachineRequest names the machine by the MAC its firmware boots from.
type EnrollMachineRequest struct {
	MAC string `json:"mac"`
}

// EnrollMark is a machine's enrollment mark as the boot plan now holds it.
type EnrollMark struct {
	MAC    string `json:"mac"`
	Enroll bool   `json:"enroll"`
	// URL is where the machine fetches the image ("/assets/secureboot/enroll.iso").
	URL string `json:"url,omitempty"`
	// Replaced is the machine's own plan entry the mark replaced (or the
	// mark that was taken back); nil when it had none.
	Replaced *PlanDecision `json:"replaced,omitempty"`
	// Note says when it takes effect, in the technician's words.
	Note string `json:"note"`
}

const auditSecureBootMark = "secureboot.enroll-machine"

// planPath is the boot plan file the netboot service hands `onramp netboot`.
func (s *SecureBoot) planPath() string { return filepath.Join(s.dataDir, "bootplan.json") }

// loadPlan reads the plan file, or an empty plan when there is none yet.
func (s *SecureBoot) loadPlan() (*BootPlan, error) {
	p, err := LoadBootPlan(s.planPath())
	if errors.Is(err, os.ErrNotExist) {
		return NewBootPlan(PlanSpec{})
	}
	return p, err
}

func parseMachineMAC(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("%q is not a machine's MAC address (like 52:54:00:77:00:10)", s)
	}
	return hw, nil
}

// MarkEnroll sends the machine into SecureBoot key enrollment at its next
// network boot. The enrollment image must be built first
// (BuildEnrollmentImage).
func (s *SecureBoot) MarkEnroll(req EnrollMachineRequest) (EnrollMark, error) {
	hw, err := parseMachineMAC(req.MAC)
	if err != nil {
		return EnrollMark{}, fmt.Errorf("mark machine for enrollment: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(filepath.Join(s.dataDir, "assets", enrollISOAsset)); err != nil {
		return EnrollMark{}, errors.New("mark machine for enrollment: build the enrollment image first (SecureBoot step)")
	}
	plan, err := s.loadPlan()
	if err != nil {
		return EnrollMark{}, fmt.Errorf("mark machine for enrollment: %w", err)
	}
	mark := EnrollDecision()
	cur, had := plan.Spec().Machines[hw.String()]
	switch {
	case had && cur.Kind == netboot.BootEnroll:
		mark.Then = cur.Then // marked again: keep what it had before the first mark
	case had:
		mark.Then = &cur
	}
	prev, had, err := plan.SetMachine(hw, mark)
	if err != nil {
		return EnrollMark{}, fmt.Errorf("mark machine for enrollment: %w", err)
	}
	if err := SaveBootPlan(s.planPath(), plan.Spec()); err != nil {
		return EnrollMark{}, fmt.Errorf("mark machine for enrollment: %w", err)
	}
	m := EnrollMark{MAC: hw.String(), Enroll: true, URL: "/assets/" + enrollISOAsset,
		Note: "Restart " + hw.String() + " with its firmware in setup mode: at its next network boot it enrolls the site's keys and restarts."}
	if had && prev.Kind != EnrollDecision().Kind {
		m.Replaced = &prev
	}
	s.record(context.Background(), auditSecureBootMark, hw.String(), map[string]any{"enroll": true, "iso": enrollISOAsset})
	return m, nil
}

// UnmarkEnroll takes a machine's enrollment mark back: it then boots what
// the plan's defaults say. A machine that has no mark is left alone.
func (s *SecureBoot) UnmarkEnroll(req EnrollMachineRequest) (EnrollMark, error) {
	hw, err := parseMachineMAC(req.MAC)
	if err != nil {
		return EnrollMark{}, fmt.Errorf("unmark machine for enrollment: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	plan, err := s.loadPlan()
	if err != nil {
		return EnrollMark{}, fmt.Errorf("unmark machine for enrollment: %w", err)
	}
	m, err := s.unmarkLocked(plan, hw, map[string]any{"enroll": false})
	if err != nil {
		return EnrollMark{}, fmt.Errorf("unmark machine for enrollment: %w", err)
	}
	return m, nil
}

// unmarkLocked takes hw's mark back in plan, puts back the entry it
// replaced, saves the plan and records it with detail; a machine without a
// mark is left alone (nothing saved or recorded). s.mu is held.
func (s *SecureBoot) unmarkLocked(plan *BootPlan, hw net.HardwareAddr, detail map[string]any) (EnrollMark, error) {
	m := EnrollMark{MAC: hw.String(), Note: hw.String() + " boots as planned for every machine at its next network boot."}
	cur, ok := plan.Spec().Machines[hw.String()]
	if !ok || cur.Kind != netboot.BootEnroll {
		m.Note = hw.String() + " was not marked for enrollment; nothing changed."
		return m, nil
	}
	if cur.Then != nil {
		if _, _, err := plan.SetMachine(hw, *cur.Then); err != nil {
			return EnrollMark{}, err
		}
		m.Note = hw.String() + " boots what it was set to boot before the mark at its next network boot."
	} else {
		plan.ClearMachine(hw)
		if plan.Spec().Allowlist {
			m.Note = hw.String() + " is no longer approved for network boot (the allowlist is on): approve it again to install it."
		}
	}
	if err := SaveBootPlan(s.planPath(), plan.Spec()); err != nil {
		return EnrollMark{}, err
	}
	m.Replaced = &cur
	s.record(context.Background(), auditSecureBootMark, hw.String(), detail)
	if s.bus != nil {
		s.bus.Publish("secureboot:marks", m)
	}
	return m, nil
}

// maintenanceSeen is told what discovery read from a machine in Talos
// maintenance mode. A machine marked for enrollment that now reports
// SecureBoot on has enrolled: its mark is taken back, so its next network
// boot is Talos again, not the enrollment image.
func (s *SecureBoot) maintenanceSeen(mac string, attrs map[string]string) {
	if attrs["secureBoot"] != "on" {
		return
	}
	hw, err := parseMachineMAC(mac)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	plan, err := s.loadPlan()
	if err != nil {
		return
	}
	s.unmarkLocked(plan, hw, map[string]any{"enroll": false, "automatic": true,
		"why": "Talos maintenance mode reports SecureBoot on", "serial": attrs["serial"]})
}

// EnrollMarks lists the machines the boot plan sends into key enrollment.
func (s *SecureBoot) EnrollMarks() ([]EnrollMark, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.loadPlan()
	if err != nil {
		return nil, fmt.Errorf("list enrollment marks: %w", err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := []EnrollMark{}
	for mac, d := range p.spec.Machines {
		if d.Kind == netboot.BootEnroll {
			out = append(out, EnrollMark{MAC: mac, Enroll: true, URL: "/assets/" + d.ISO})
		}
	}
	slices.SortFunc(out, func(a, b EnrollMark) int { return strings.Compare(a.MAC, b.MAC) })
	return out, nil
}
