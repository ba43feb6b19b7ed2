// Package app holds the services bound to the UI and the transports that
// carry them: Wails bindings in the desktop app, and JSON over HTTP plus a
// server-sent event stream for a browser or a cart tablet (web.go). Both are
// built from one list of services (App.Services), so a method cannot be
// bound on one side and forgotten on the other.
//
// The services are thin adapters: they call the core packages (netboot,
// talos, store, ...) and return JSON-tagged structs. Core packages never
// import this package or Wails.
package app

import (
	"fmt"
	"log/slog"
	"os"

	"onramp/store"
)

// Config is what the app needs to start.
type Config struct {
	Build   BuildInfo
	DataDir string
	Mode    Mode
	// AdminPIN guards leaving kiosk mode.
	AdminPIN string
	// AuthRequired makes web clients log in with WebPIN.
	AuthRequired bool
	Logger       *slog.Logger
	// Exe is the onramp binary the boot services and the lab run as children;
	// default os.Executable() (tests, whose own binary is not onramp, set it).
	Exe string
	// LabNetNS, LabCache and LabSimulator override `lab up`'s --netns,
	// --cache and --simulator (tests use their own namespace name).
	LabNetNS, LabCache, LabSimulator string
}

// App is the set of services and the event bus they publish on.
type App struct {
	Bus      *Bus
	System   *System
	Network  *Network
	Settings *Settings
	Shell    *Shell
	Netboot  *Netboot
	Machines *Machines
	Site     *Site
	Lab      *Lab
	// Vault keeps the cluster secrets encrypted at rest (vault engineer).
	Vault *Vault
	// Install installs and verifies the site's machines.
	Install *Install
	// Handoff writes the encrypted handoff bundle and wipes the secrets;
	// Report is the site report (steps 7 and 8).
	Handoff *Handoff
	Report  *Report
	// SecureBoot is step 4: the site's keys and the enrollment image.
	SecureBoot *SecureBoot

	log *slog.Logger
}

// New creates the data directory if needed and the services.
func New(cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	bus := NewBus()
	settings, err := NewSettings(cfg.DataDir, bus)
	if err != nil {
		return nil, err
	}
	site, err := NewSite(cfg.DataDir, bus)
	if err != nil {
		return nil, err
	}
	exe := cfg.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find own binary: %w", err)
		}
	}
	machines := NewMachines(bus)
	nb := NewNetboot(exe, cfg.DataDir, machines, bus, cfg.Logger)
	lb := NewLab(exe, cfg.DataDir, machines, bus)
	lb.netns, lb.cache, lb.simulator = cfg.LabNetNS, cfg.LabCache, cfg.LabSimulator
	nb.labRunning, lb.onChange = lb.running, nb.publish
	// The vault opens onramp.db; a failure there is reported by its calls
	// and does not stop the app (see Vault).
	vault := newVault(cfg.DataDir, bus, site, store.VaultOptions{Actor: DefaultActor, ActorFunc: settings.actor})
	inst := NewInstall(site, machines, lb, bus, cfg.Logger)
	inst.vault = vault
	rep := NewReport(site, inst, vault, cfg.Build)
	handoff := NewHandoff(cfg.DataDir, site, inst, vault, rep, bus, cfg.Logger)
	site.handedOff = handoff.wipedAt
	sb := NewSecureBoot(cfg.DataDir, cfg.LabCache, vault, site, bus)
	machines.onMaintenance = sb.maintenanceSeen
	return &App{
		Report:   rep,
		Handoff:  handoff,
		Vault:    vault,
		Bus:      bus,
		Machines: machines,
		Site:     site,
		Lab:      lb,
		Install:  inst,
		Netboot:  nb,
		System:   NewSystem(cfg.Build, cfg.DataDir, cfg.Mode),
		Network:  &Network{sysfs: "/sys/class/net", route: "/proc/net/route", labNetNS: cfg.LabNetNS},
		Settings: settings,
		Shell:    NewShell(cfg.Mode, cfg.AdminPIN, cfg.AuthRequired),
		log:      cfg.Logger,

		SecureBoot: sb,
	}, nil
}

// Services is the one list bound to Wails and served over HTTP.
func (a *App) Services() []any {
	return []any{a.System, a.Network, a.Settings, a.Shell, a.Netboot, a.Site, a.Lab,
		a.Vault, a.Install, a.Handoff, a.Report, a.SecureBoot}
}

// Close stops what the services started (the boot services).
func (a *App) Close() {
	a.Install.close()
	a.Netboot.close()
	a.Lab.close()
	a.Vault.close()
}
