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
// back with SecureBoot on), UnmarkEnroll takes the mark back.

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
	prev, had, err := plan.SetMachine(hw, EnrollDecision())
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
	m := EnrollMark{MAC: hw.String(), Note: hw.String() + " boots as planned for every machine at its next network boot."}
	cur, ok := plan.Spec().Machines[hw.String()]
	if !ok || cur.Kind != EnrollDecision().Kind {
		m.Note = hw.String() + " was not marked for enrollment; nothing changed."
		return m, nil
	}
	plan.ClearMachine(hw)
	if plan.Spec().Allowlist {
		m.Note = hw.String() + " is no longer approved for network boot (the allowlist is on): approve it again to install it."
	}
	if err := SaveBootPlan(s.planPath(), plan.Spec()); err != nil {
		return EnrollMark{}, fmt.Errorf("unmark machine for enrollment: %w", err)
	}
	m.Replaced = &cur
	s.record(context.Background(), auditSecureBootMark, hw.String(), map[string]any{"enroll": false})
	return m, nil
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
