package app

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"onramp/netboot"
	"onramp/talos/discover"
	"onramp/talos/events"
)

// TestMachinesTalosStages: Talos' own stage events move a machine to
// maintenance, installing and running (contract A); other stages and kernel
// log lines leave the stage alone but land on the timeline.
func TestMachinesTalosStages(t *testing.T) {
	t.Parallel()
	const mac = "52:54:00:77:00:10"
	talos := func(stage, errText string) netboot.Event {
		e := netboot.Event{Kind: events.EventTalos, MAC: mac, Detail: "stage: " + stage, Err: errText, Attrs: map[string]string{"type": "MachineStatusEvent", "stage": stage, "ready": "false"}}
		if stage == "" {
			e.Detail, e.Attrs = "phase install: running", map[string]string{"type": "PhaseEvent", "phase": "install"}
		}
		return e
	}
	tests := []struct {
		name    string
		ev      netboot.Event
		stage   string
		problem string
	}{
		{"dhcp first", netboot.Event{Kind: netboot.EventDHCPAck, MAC: mac, IP: "10.77.0.20"}, "dhcp", ""},
		{"booting leaves it", talos("booting", ""), "dhcp", ""},
		{"maintenance", talos("maintenance", ""), "maintenance", ""},
		{"phase leaves it", talos("", ""), "maintenance", ""},
		{"kmsg leaves it", netboot.Event{Kind: events.EventKmsg, MAC: mac, Detail: "tpm_tis: 2.0 TPM", Attrs: map[string]string{"priority": "info"}}, "maintenance", ""},
		{"installing", talos("installing", ""), "installing", ""},
		{"rebooting leaves it", talos("rebooting", ""), "installing", ""},
		{"running", talos("running", ""), "running", ""},
		{"config error is a problem", netboot.Event{Kind: events.EventTalos, MAC: mac, Detail: "config validation error", Err: "config validation error: bad", Attrs: map[string]string{"type": "ConfigValidationErrorEvent"}}, "running", "config validation error: bad"},
		{"upgrading leaves it, clears nothing", talos("upgrading", ""), "running", "config validation error: bad"},
	}
	m := NewMachines(nil)
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i, tt := range tests {
		tt.ev.Time = start.Add(time.Duration(i) * time.Second)
		m.Emit(tt.ev)
		l := m.List()
		if len(l) != 1 {
			t.Fatalf("%s: %d machines", tt.name, len(l))
		}
		got := l[0]
		if got.Stage != tt.stage || got.Problem != tt.problem {
			t.Errorf("%s: stage %q problem %q, want %q %q", tt.name, got.Stage, got.Problem, tt.stage, tt.problem)
		}
		if len(got.Timeline) != i+1 || !cmp.Equal(got.Timeline[i], tt.ev) {
			t.Errorf("%s: timeline has %d entries, last %+v", tt.name, len(got.Timeline), got.Timeline[len(got.Timeline)-1])
		}
	}
}

// A burst of events for one machine (a booting node's kernel log) gives a
// bounded number of "netboot:machine" updates, the last of which carries the
// final state.
func TestMachinesCoalescesUpdates(t *testing.T) {
	t.Parallel()
	bus := NewBus()
	ch, cancel := bus.Subscribe()
	defer cancel()
	m := NewMachines(bus)
	const mac = "52:54:00:77:00:42"
	for i := range 500 {
		kind := events.EventKmsg
		if i == 499 {
			kind = discover.EventMaintenance
		}
		m.Emit(netboot.Event{Time: time.Now(), Kind: kind, MAC: mac, Detail: "line", Attrs: map[string]string{"serial": "S-1"}})
	}
	var updates []MachineView
	deadline := time.After(5 * time.Second)
	for {
		select {
		case msg := <-ch:
			if msg.Name == EventResync {
				t.Fatal("events were dropped")
			}
			if msg.Name == "netboot:machine" {
				updates = append(updates, msg.Data.(MachineView))
			}
			if n := len(updates); n > 0 && updates[n-1].Stage == "maintenance" {
				if n > 3 {
					t.Errorf("%d updates for one burst, want at most 3", n)
				}
				return
			}
		case <-deadline:
			t.Fatalf("the final state never arrived (%d updates)", len(updates))
		}
	}
}
