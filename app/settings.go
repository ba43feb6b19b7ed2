package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode"

	"onramp/store"
)

// Settings are the technician's preferences, persisted in the data directory.
type Settings struct {
	path string
	bus  *Bus

	mu  sync.Mutex
	cur Preferences
}

// Preferences is what Settings.Get returns and Settings.Set takes.
type Preferences struct {
	Theme       string `json:"theme"`       // system | light | dark
	Iface       string `json:"iface"`       // the NIC cabled to the cart switch; "" = none chosen
	NetbootMode string `json:"netbootMode"` // auto | isolated | proxy
	// Technician is who does the visit, as the audit trail and the site
	// report name them; "" = "technician".
	Technician string `json:"technician,omitempty"`
}

// DefaultPreferences are used until the technician changes something.
func DefaultPreferences() Preferences {
	return Preferences{Theme: "system", NetbootMode: "auto"}
}

// Validate reports the first invalid field in plain words.
func (p Preferences) Validate() error {
	switch p.Theme {
	case "system", "light", "dark":
	default:
		return fmt.Errorf("theme: %q is not one of system, light, dark", p.Theme)
	}
	switch p.NetbootMode {
	case "auto", "isolated", "proxy":
	default:
		return fmt.Errorf("netbootMode: %q is not one of auto, isolated, proxy", p.NetbootMode)
	}
	if len(p.Iface) > 15 {
		return fmt.Errorf("iface: %q is longer than an interface name can be", p.Iface)
	}
	if len([]rune(p.Technician)) > 80 {
		return errors.New("technician: a name of at most 80 characters")
	}
	for _, r := range p.Technician {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("technician: %q holds a control character", p.Technician)
		}
	}
	return nil
}

// DefaultActor names the technician in the audit trail until Settings
// holds a name.
const DefaultActor = "technician"

// actor is who the audit trail records for what is done now: the
// technician's name from the settings, or DefaultActor.
func (s *Settings) actor() string {
	if s == nil {
		return DefaultActor
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := strings.TrimSpace(s.cur.Technician); n != "" {
		return n
	}
	return DefaultActor
}

const settingsFile = "settings.json"

// NewSettings loads settings from dataDir. A missing file gives the
// defaults; a corrupt one is an error that names the file, so nothing is
// silently overwritten.
func NewSettings(dataDir string, bus *Bus) (*Settings, error) {
	s := &Settings{path: filepath.Join(dataDir, settingsFile), bus: bus, cur: DefaultPreferences()}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("load settings: %w", err)
	}
	p := DefaultPreferences()
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("load settings: %s is corrupt (%v); move it aside to start from defaults", s.path, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("load settings: %s: %w", s.path, err)
	}
	s.cur = p
	return s, nil
}

// Get returns the current settings.
func (s *Settings) Get() (Preferences, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, nil
}

// Set validates, persists and returns the new settings.
func (s *Settings) Set(p Preferences) (Preferences, error) {
	if err := p.Validate(); err != nil {
		return Preferences{}, err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return Preferences{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := store.WriteFileAtomic(s.path, append(b, '\n'), 0o600); err != nil {
		return Preferences{}, fmt.Errorf("save settings: %w", err)
	}
	s.cur = p
	if s.bus != nil {
		s.bus.Publish("settings:changed", p)
	}
	return p, nil
}
