package lab

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type e2eWant struct {
	state      string // StateBooted, or a prefix of "failed: ..."
	secureboot string
	tpm        string
	ipxe       bool // the machine fetched its iPXE script
}

// labScenario is the machine set of the netboot end-to-end tests: UEFI+TPM
// via firmware PXE → TFTP (signed iPXE) → HTTP kernel+initrd; BIOS via
// QEMU's iPXE ROM → HTTP; UEFI SecureBoot with site keys → signed iPXE →
// signed UKI; UEFI SecureBoot with vendor (Microsoft) keys, whose firmware
// refuses the site-signed iPXE.
func labScenario() ([]Machine, map[string]e2eWant) {
	ms := []Machine{
		NewMachine(1, FirmwareUEFI, "", true, 256<<20),
		NewMachine(2, FirmwareBIOS, "", false, 256<<20),
		NewMachine(3, FirmwareUEFISecureBoot, KeysSite, true, 256<<20),
		NewMachine(4, FirmwareUEFISecureBoot, KeysVendor, false, 0),
	}
	return ms, map[string]e2eWant{
		"lab-1": {StateBooted, "0", "1", true},
		"lab-2": {StateBooted, "none", "0", true},
		"lab-3": {StateBooted, "1", "1", true},
		"lab-4": {"failed: firmware refused the boot loader", "", "", false},
	}
}

// runScenario runs a lab with netboot nb and waits until every machine
// reaches its wanted state (or the budget runs out), checking `lab status`.
func runScenario(t *testing.T, nb Netboot, peer *peerNetboot, budget time.Duration) string {
	ms, want := labScenario()
	return runMachines(t, nb, peer, budget, ms, want, nsName())
}

// runMachines is runScenario for machine set ms in namespace ns.
func runMachines(t *testing.T, nb Netboot, peer *peerNetboot, budget time.Duration, ms []Machine, want map[string]e2eWant, ns string) string {
	// With ONRAMP_TALOSSIM set to a talossim binary, the guests run the
	// simulator and must reach maintenance mode.
	sim := os.Getenv("ONRAMP_TALOSSIM")
	if sim != "" {
		for k, w := range want {
			if w.state == StateBooted {
				w.state = StateMaintenance
				want[k] = w
			}
		}
	}
	data := t.TempDir()
	l, err := New(Config{DataDir: data, CacheDir: testCacheDir(), NetNS: ns, Machines: ms, Netboot: nb, Simulator: sim})
	if err != nil {
		t.Fatal(err)
	}
	// The lab keeps running after this returns, for the caller's checks;
	// the cleanup stops it.
	ctx, cancel := context.WithTimeout(t.Context(), budget+90*time.Second)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Lab.Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("Lab.Run did not return within 60 s of cancel")
		}
		_ = Down(context.Background(), data, ns)
		if Exists := fileExists("/run/netns/" + ns); Exists {
			t.Errorf("namespace %s left behind", ns)
		}
	})
	select {
	case <-l.Ready:
	case err := <-done:
		t.Fatalf("Lab.Run: %v", err)
	case <-ctx.Done():
		t.Fatal("lab never became ready")
	}
	t.Logf("lab ready after %s (kit, network, netboot)", time.Since(start).Round(100*time.Millisecond))
	bootStart := time.Now()
	reached := map[string]time.Duration{}
	deadline := time.Now().Add(budget)
	var lines []StatusLine
	for time.Now().Before(deadline) && len(reached) < len(want) {
		lines, _, err = Status(data)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		for _, sl := range lines {
			if _, ok := reached[sl.Name]; !ok && strings.HasPrefix(sl.State, want[sl.Name].state) {
				reached[sl.Name] = time.Since(bootStart)
				t.Logf("%s (%s) %s after %s", sl.Name, sl.Firmware, sl.State, reached[sl.Name].Round(100*time.Millisecond))
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Lab.Run returned early: %v", err)
		case <-time.After(time.Second):
		}
	}
	st := l.State()
	for _, m := range st.Machines {
		w := want[m.Name]
		o := ObserveFile(filepath.Join(m.Dir, "serial.log"))
		if _, ok := reached[m.Name]; !ok {
			log, _ := os.ReadFile(filepath.Join(m.Dir, "serial.log"))
			extra := ""
			if peer != nil {
				extra = "\nkea: " + peerLog(peer.logDir, "kea.log") + "\ntftpd: " + peerLog(peer.logDir, "in.tftpd.out")
			}
			t.Errorf("%s: state %q, want %q; serial tail:\n%s%s", m.Name, o, w.state, tail(string(log), 2500), extra)
			continue
		}
		if w.state != StateBooted && w.state != StateMaintenance {
			continue
		}
		if got := o.Info["secureboot"]; got != w.secureboot {
			t.Errorf("%s: guest reports secureboot=%q, want %q", m.Name, got, w.secureboot)
		}
		if got := o.Info["tpm"]; got != w.tpm {
			t.Errorf("%s: guest reports tpm=%q, want %q", m.Name, got, w.tpm)
		}
		if got := o.Info["serial"]; got != m.Serial {
			t.Errorf("%s: guest reports serial=%q, want %q", m.Name, got, m.Serial)
		}
		if ip := o.Info["ip"]; !strings.HasPrefix(ip, "10.77.0.") {
			t.Errorf("%s: guest address %q not from the lab subnet", m.Name, ip)
		}
		if peer != nil && w.ipxe && len(peer.served(m.MAC)) == 0 {
			t.Errorf("%s: never fetched its iPXE script", m.Name)
		}
	}
	for _, m := range ms {
		if peer != nil && m.SecureBootKeys == KeysVendor && len(peer.served(m.MAC)) != 0 {
			t.Errorf("%s: vendor-keys machine fetched an iPXE script: its firmware should have refused iPXE", m.Name)
		}
	}
	t.Logf("all machines settled after %s", time.Since(bootStart).Round(100*time.Millisecond))
	if p := os.Getenv("ONRAMP_BENCH_LAB_JSON"); p != "" && len(ms) == 4 && nb != nil && peer == nil {
		writeLabBench(t, p, ms, st, reached, time.Since(bootStart))
	}
	return data
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestNetbootWithPeers boots the scenario from Kea + tftpd-hpa + net/http.
func TestNetbootWithPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("boots four QEMU guests (~2 min on 2 cores); skipped with -short")
	}
	needRoot(t, "kea-dhcp4", "in.tftpd", "ip")
	needQEMU(t)
	ms, _ := labScenario()
	peer := &peerNetboot{machines: ms, logDir: t.TempDir(), fetched: map[string][]string{}}
	runScenario(t, peer.Run, peer, 240*time.Second)
}

// TestNetbootOnramp boots the scenario from Onramp's own `onramp netboot`
// verb. Set ONRAMP_LAB_E2E=1 and ONRAMP_BIN to the onramp binary (built
// with `go build -o bin/onramp .` otherwise).
func TestNetbootOnramp(t *testing.T) {
	if os.Getenv("ONRAMP_LAB_E2E") != "1" {
		t.Skip("set ONRAMP_LAB_E2E=1 to boot the lab from Onramp's own netboot")
	}
	needRoot(t, "ip")
	needQEMU(t)
	bin := os.Getenv("ONRAMP_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "onramp")
		cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "onramp")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build onramp: %v\n%s", err, out)
		}
	}
	data := runScenario(t, ExecNetboot(bin, "--stuck-after", "20s"), nil, 240*time.Second)
	// The stuck report comes 20 s after the vendor-keys machine's last
	// iPXE download: give it that long after the machines settled.
	pollUntil(90*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(data, NetbootEventsFile))
		return strings.Contains(string(b), `"kind":"netboot.stuck"`)
	})
	// Onramp's Talos client looks at a leased machine every few seconds: the
	// last guest to reach maintenance mode may be read a little after it
	// settled (under TCG its TLS handshake alone takes seconds).
	if os.Getenv("ONRAMP_TALOSSIM") != "" {
		ms, _ := labScenario()
		pollUntil(60*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(data, NetbootEventsFile))
			for _, m := range ms {
				if m.SecureBootKeys != KeysVendor && !strings.Contains(string(b), `"kind":"talos.maintenance","mac":"`+m.MAC+`"`) {
					return false
				}
			}
			return true
		})
	}
	// Onramp's own events tell the vendor-keys machine's story: DHCP and the
	// iPXE download over TFTP, then no iPXE script ever asked for (its
	// firmware refused iPXE; it may still try UEFI HTTP boot, refused too);
	// the others fetched their kernel or UKI over HTTP.
	b, err := os.ReadFile(filepath.Join(data, NetbootEventsFile))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]map[string]bool{}
	attrs := map[string]map[string]string{} // MAC → what Onramp's Talos client read in maintenance mode
	stuck := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		var e struct {
			Kind, MAC, Error string
			Attrs            map[string]string
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.MAC == "" {
			continue
		}
		if kinds[e.MAC] == nil {
			kinds[e.MAC] = map[string]bool{}
		}
		kinds[e.MAC][e.Kind] = true
		if e.Kind == "talos.maintenance" {
			attrs[e.MAC] = e.Attrs
		}
		if e.Kind == "netboot.stuck" {
			stuck[e.MAC] = e.Error
		}
	}
	ms, _ := labScenario()
	for _, m := range ms {
		k := kinds[m.MAC]
		if !k["dhcp.ack"] {
			t.Errorf("%s: no dhcp.ack event; events: %v", m.Name, k)
		}
		if m.SecureBootKeys == KeysVendor {
			if !k["tftp.done"] || k["ipxe.script"] {
				t.Errorf("%s (vendor keys): want tftp.done and no iPXE script; events: %v", m.Name, k)
			}
			// Onramp says in plain words where and why it is stuck.
			t.Logf("%s: Onramp reports: %s", m.Name, stuck[m.MAC])
			if !strings.Contains(stuck[m.MAC], "stuck after") || !strings.Contains(stuck[m.MAC], "SecureBoot") {
				t.Errorf("%s (vendor keys): want a netboot.stuck event naming SecureBoot; got %q", m.Name, stuck[m.MAC])
			}
			continue
		} else if !k["http.done"] && !k["ipxe.script"] {
			t.Errorf("%s: no HTTP events; events: %v", m.Name, k)
		}
		if os.Getenv("ONRAMP_TALOSSIM") == "" {
			continue
		}
		// Onramp's real Talos client (machinery, over the maintenance
		// API's TLS) saw the machine and read what its firmware reports.
		a := attrs[m.MAC]
		if a == nil {
			t.Errorf("%s: Onramp never saw it in maintenance mode (no talos.maintenance event)", m.Name)
			continue
		}
		wantSB, wantTPM := "off", "absent"
		if m.Firmware == FirmwareUEFISecureBoot {
			wantSB = "on"
		}
		if m.TPM {
			wantTPM = "present"
		}
		t.Logf("%s: Onramp's Talos client read serial=%s secureBoot=%s tpm=%s fingerprint=%s", m.Name, a["serial"], a["secureBoot"], a["tpm"], a["fingerprint"])
		if a["serial"] != m.Serial || a["secureBoot"] != wantSB || a["tpm"] != wantTPM || a["fingerprint"] == "" {
			t.Errorf("%s: Talos client read serial=%q secureBoot=%q tpm=%q fingerprint=%q; want %q, %q, %q and a fingerprint",
				m.Name, a["serial"], a["secureBoot"], a["tpm"], a["fingerprint"], m.Serial, wantSB, wantTPM)
		}
	}
	// Every guest that booted the simulator reported to Onramp's event
	// sink and kernel log receiver (talos.events.sink= and
	// talos.logging.kernel= on its command line, baked into the UKI).
	if os.Getenv("ONRAMP_TALOSSIM") != "" {
		var booted []Machine
		for _, m := range ms {
			if m.SecureBootKeys != KeysVendor {
				booted = append(booted, m)
			}
		}
		checkTalosReports(t, data, booted, nil)
	}
}

// talosReport is what a machine's Talos (the simulator) reported to
// Onramp's receivers, from the netboot events file.
type talosReport struct {
	Stages map[string]bool // MachineStatusEvent stages seen
	Types  map[string]int  // Talos event types seen
	Events int             // talos.event entries
	Kmsg   int             // talos.kmsg entries
	Sample string          // one kernel log line
}

// talosReports reads the talos.event and talos.kmsg entries of Onramp's
// netboot events file, by MAC.
func talosReports(t *testing.T, data string) map[string]*talosReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, NetbootEventsFile))
	if err != nil {
		t.Fatalf("read netboot events: %v", err)
	}
	out := map[string]*talosReport{}
	for _, line := range strings.Split(string(b), "\n") {
		var e struct {
			Kind, MAC, Detail string
			Attrs             map[string]string
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.MAC == "" || (e.Kind != "talos.event" && e.Kind != "talos.kmsg") {
			continue
		}
		r := out[e.MAC]
		if r == nil {
			r = &talosReport{Stages: map[string]bool{}, Types: map[string]int{}}
			out[e.MAC] = r
		}
		if e.Kind == "talos.kmsg" {
			r.Kmsg++
			if r.Sample == "" || strings.Contains(e.Detail, "Linux version") {
				r.Sample = e.Detail
			}
			continue
		}
		r.Events++
		r.Types[e.Attrs["type"]]++
		if st := e.Attrs["stage"]; st != "" {
			r.Stages[st] = true
		}
	}
	return out
}

// checkTalosReports: every machine that reached maintenance mode told
// Onramp's event sink so (MachineStatusEvent maintenance) and streamed its
// kernel log; want adds stages a machine must also have reported.
func checkTalosReports(t *testing.T, data string, ms []Machine, want map[string][]string) {
	t.Helper()
	var reps map[string]*talosReport
	ok := func() bool {
		reps = talosReports(t, data)
		for _, m := range ms {
			r := reps[m.MAC]
			if r == nil || !r.Stages["maintenance"] || r.Kmsg == 0 {
				return false
			}
			for _, st := range want[m.Name] {
				if !r.Stages[st] {
					return false
				}
			}
		}
		return true
	}
	pollUntil(30*time.Second, ok)
	for _, m := range ms {
		r := reps[m.MAC]
		if r == nil {
			t.Errorf("%s: no talos.event or talos.kmsg entry in %s", m.Name, NetbootEventsFile)
			continue
		}
		t.Logf("%s: Onramp received %d Talos events %v (stages %v) and %d kernel log lines, e.g. %q", m.Name, r.Events, r.Types, r.Stages, r.Kmsg, r.Sample)
		for _, st := range append([]string{"maintenance"}, want[m.Name]...) {
			if !r.Stages[st] {
				t.Errorf("%s: no talos.event with stage %s; stages %v", m.Name, st, r.Stages)
			}
		}
		if r.Kmsg == 0 {
			t.Errorf("%s: no talos.kmsg entry", m.Name)
		}
	}
}

// pollUntil polls cond once a second until it holds or max passes.
func pollUntil(max time.Duration, cond func() bool) {
	for deadline := time.Now().Add(max); time.Now().Before(deadline); time.Sleep(time.Second) {
		if cond() {
			return
		}
	}
}

// writeLabBench records the scenario's boot times for `make bench`
// (build/bench/lab.json, shown in its table as the virtual lab's N-guest
// QEMU boot time).
func writeLabBench(t *testing.T, path string, ms []Machine, st State, reached map[string]time.Duration, settled time.Duration) {
	type guest struct {
		Firmware string  `json:"firmware"`
		State    string  `json:"state"`
		Seconds  float64 `json:"seconds"`
	}
	out := struct {
		Guests         int              `json:"guests"`
		SettledSeconds float64          `json:"settledSeconds"`
		Simulator      bool             `json:"simulator"`
		MeasuredAt     time.Time        `json:"measuredAt"`
		Machines       map[string]guest `json:"machines"`
	}{Guests: len(ms), SettledSeconds: settled.Seconds(), Simulator: os.Getenv("ONRAMP_TALOSSIM") != "", MeasuredAt: time.Now().UTC(), Machines: map[string]guest{}}
	for _, m := range st.Machines {
		o := ObserveFile(filepath.Join(m.Dir, "serial.log"))
		out.Machines[m.Name] = guest{Firmware: m.Describe(), State: o.String(), Seconds: reached[m.Name].Seconds()}
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Errorf("write %s: %v", path, err)
		return
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Errorf("write %s: %v", path, err)
	}
}
