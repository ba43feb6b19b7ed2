package app

import (
	"maps"
	"sort"
	"sync"
	"time"

	"onramp/netboot"
	"onramp/talos/discover"
	"onramp/talos/events"
)

// Machines keeps every machine seen on the cart network with its timeline,
// built from the boot services' events. It is the Discover step's model.
type Machines struct {
	bus *Bus
	// onMaintenance, when set, is told each maintenance-mode reading (the
	// SecureBoot step takes enrollment marks back with it).
	onMaintenance func(mac string, attrs map[string]string)

	mu   sync.Mutex
	byID map[string]*MachineView
	// Per machine, "netboot:machine" goes out at most every publishEvery
	// (first change at once, the latest one at the end of the interval): a
	// booting node's kernel log is hundreds of events a second, and each
	// update carries the whole timeline.
	publishedAt map[string]time.Time
	owed        map[string]bool
}

// publishEvery bounds "netboot:machine" updates per machine.
const publishEvery = 200 * time.Millisecond

// MachineView is one machine as the UI shows it.
type MachineView struct {
	MAC     string `json:"mac"`
	UUID    string `json:"uuid,omitempty"`
	Arch    string `json:"arch,omitempty"`
	IP      string `json:"ip,omitempty"`
	Stage   string `json:"stage"` // dhcp | tftp | http | ignored | maintenance | installing | running
	Problem string `json:"problem,omitempty"`
	// Attrs is what the node said about itself in maintenance mode
	// (vendor, product, serial, secureBoot, tpm, fingerprint, disks).
	Attrs     map[string]string `json:"attrs,omitempty"`
	FirstSeen time.Time         `json:"firstSeen"`
	LastSeen  time.Time         `json:"lastSeen"`
	Timeline  []netboot.Event   `json:"timeline"`
}

// Bounds against floods of random MACs and chatty clients.
const (
	maxMachines           = 1024
	maxTimelinePerMachine = 200
)

// NewMachines returns an empty registry publishing "netboot:machine" on bus.
func NewMachines(bus *Bus) *Machines {
	return &Machines{bus: bus, byID: make(map[string]*MachineView), publishedAt: map[string]time.Time{}, owed: map[string]bool{}}
}

// Emit implements netboot.Sink: events with a MAC land on that machine.
func (m *Machines) Emit(e netboot.Event) {
	if m.bus != nil && e.Kind != events.EventKmsg { // kernel lines reach the UI on the machine's timeline
		m.bus.Publish("netboot:event", e)
	}
	if e.MAC == "" {
		return
	}
	if e.Kind == discover.EventMaintenance && m.onMaintenance != nil {
		defer m.onMaintenance(e.MAC, e.Attrs)
	}
	m.mu.Lock()
	v, ok := m.byID[e.MAC]
	if !ok {
		if len(m.byID) >= maxMachines {
			m.mu.Unlock()
			return
		}
		v = &MachineView{MAC: e.MAC, FirstSeen: e.Time, Stage: "dhcp"}
		m.byID[e.MAC] = v
	}
	v.LastSeen = e.Time
	if e.UUID != "" {
		v.UUID = e.UUID
	}
	if e.Arch != "" {
		v.Arch = e.Arch
	}
	if e.IP != "" && (e.Kind == netboot.EventDHCPAck || v.IP == "") {
		v.IP = e.IP
	}
	switch e.Kind {
	case netboot.EventTFTPStart, netboot.EventTFTPDone:
		v.Stage, v.Problem = "tftp", ""
	case netboot.EventHTTPStart, netboot.EventHTTPDone, netboot.EventIPXEScript:
		v.Stage, v.Problem = "http", ""
	case discover.EventMaintenance:
		v.Stage, v.Problem = "maintenance", ""
		if v.Attrs == nil {
			v.Attrs = map[string]string{}
		}
		maps.Copy(v.Attrs, e.Attrs)
	case events.EventTalos:
		// What Talos itself says (MachineStatusEvent): only the stages the
		// visit cares about move the machine; booting, rebooting and the
		// like leave it where it was.
		switch st := e.Attrs["stage"]; st {
		case "maintenance", "installing", "running":
			v.Stage, v.Problem = st, ""
		}
		if e.Err != "" {
			v.Problem = e.Err
		}
	case netboot.EventDHCPIgnored:
		v.Stage, v.Problem = "ignored", e.Err
	case netboot.EventStuck:
		v.Problem = e.Err
	case netboot.EventTFTPError, netboot.EventHTTPError, netboot.EventDHCPNak:
		if e.Err != "" {
			v.Problem = e.Err
		}
	}
	v.Timeline = append(v.Timeline, e)
	if len(v.Timeline) > maxTimelinePerMachine {
		v.Timeline = append(v.Timeline[:0], v.Timeline[len(v.Timeline)-maxTimelinePerMachine:]...)
	}
	if m.bus == nil {
		m.mu.Unlock()
		return
	}
	mac := e.MAC
	now := time.Now()
	if wait := m.publishedAt[mac].Add(publishEvery).Sub(now); wait > 0 {
		if !m.owed[mac] {
			m.owed[mac] = true
			time.AfterFunc(wait, func() { m.publishOwed(mac) })
		}
		m.mu.Unlock()
		return
	}
	m.publishedAt[mac] = now
	snap := v.clone()
	m.mu.Unlock()
	m.bus.Publish("netboot:machine", snap)
}

// publishOwed sends the latest state of a machine whose update was held back.
func (m *Machines) publishOwed(mac string) {
	m.mu.Lock()
	v, ok := m.byID[mac]
	if !ok || !m.owed[mac] {
		m.mu.Unlock()
		return
	}
	m.owed[mac] = false
	m.publishedAt[mac] = time.Now()
	snap := v.clone()
	m.mu.Unlock()
	m.bus.Publish("netboot:machine", snap)
}

// List returns every machine, first seen first.
func (m *Machines) List() []MachineView {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]MachineView, 0, len(m.byID))
	for _, v := range m.byID {
		out = append(out, v.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FirstSeen.Before(out[j].FirstSeen) })
	return out
}

func (v *MachineView) clone() MachineView {
	c := *v
	c.Timeline = append([]netboot.Event(nil), v.Timeline...)
	c.Attrs = maps.Clone(v.Attrs)
	return c
}
