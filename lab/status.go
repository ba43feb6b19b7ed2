package lab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// StateFile is the lab's state, written atomically to <data>/lab.json by
// `lab up` and read by `lab status` and `lab down`.
const StateFile = "lab.json"

// State is the content of lab.json.
type State struct {
	PID      int            `json:"pid"`
	Running  bool           `json:"running"`
	Started  time.Time      `json:"started"`
	NetNS    string         `json:"netns"`
	Bridge   string         `json:"bridge"`
	ServerIP string         `json:"serverIP"`
	Assets   string         `json:"assets"`
	Machines []MachineState `json:"machines"`
}

// MachineState is one machine in lab.json.
type MachineState struct {
	Machine
	Dir  string `json:"dir"`
	Tap  string `json:"tap"`
	Exit string `json:"exit,omitempty"` // why QEMU exited, if it did
}

// WriteState writes s to dir/lab.json through a temporary file and rename.
func WriteState(dir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	f, err := os.CreateTemp(dir, ".lab.json.*")
	if err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, StateFile)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// ErrNoLab is returned by ReadState when the data dir holds no lab.
var ErrNoLab = errors.New("no lab in this data directory (run `onramp lab up`)")

// ReadState reads dir/lab.json. A lab marked running whose process is gone
// (crashed, killed) is reported as not running.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoLab
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	if s.Running && !processAlive(s.PID) {
		s.Running = false
	}
	return &s, nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A killed process whose parent has not reaped it yet is a zombie: dead.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

// Machine states shown by `lab status`.
const (
	StateOff         = "off"
	StateBooting     = "booting"
	StateBooted      = "booted" // guest OS up, no simulator state yet
	StateMaintenance = "maintenance"
	StateInstalling  = "installing"
	StateInstalled   = "installed"
	StateFailed      = "failed"
)

// Observation is what the serial log says about a guest.
type Observation struct {
	State  string // one of the State* constants
	Reason string // for StateFailed: plain words
	Info   map[string]string
}

// String renders the state column: "failed: <reason>" or the state.
func (o Observation) String() string {
	if o.State == StateFailed && o.Reason != "" {
		return StateFailed + ": " + o.Reason
	}
	return o.State
}

// firmwareFailures map console text the firmware or iPXE prints to the
// plain-words reason shown to the technician.
var firmwareFailures = []struct{ text, reason string }{
	{"Access Denied", "firmware refused the boot loader: not signed by a key in its SecureBoot db"},
	{"Exec format error", "iPXE could not start the kernel: under SecureBoot only a signed UKI boots"},
	{"Kernel panic", "guest kernel panic"},
	{"No bootable device", "no bootable device: the network boot got no answer"},
}

// Observe derives a guest's state from its serial log. Lines the lab's init
// and the simulator print start with "ONRAMP-LAB:"; the last
// "ONRAMP-LAB: state=<state> [reason=<words>]" wins. The simulator is
// expected to print state=maintenance, state=installing, state=installed
// and state=failed reason=<words_with_underscores>.
func Observe(log io.Reader) Observation {
	o := Observation{State: StateBooting, Info: map[string]string{}}
	sc := bufio.NewScanner(log)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var fwFailure string
	seenMarker := false
	for sc.Scan() {
		line := sc.Text()
		// The simulator's own Talos-like console line (lab/sim) also counts.
		if strings.Contains(line, "[talos] maintenance mode") {
			seenMarker = true
			o.State = StateMaintenance
			continue
		}
		i := strings.Index(line, "ONRAMP-LAB:")
		if i < 0 {
			if !seenMarker {
				for _, f := range firmwareFailures {
					if strings.Contains(line, f.text) {
						fwFailure = f.reason
					}
				}
			}
			continue
		}
		seenMarker = true
		fields := strings.Fields(line[i+len("ONRAMP-LAB:"):])
		if len(fields) == 0 {
			continue
		}
		kv := map[string]string{}
		for _, f := range fields {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		switch {
		case fields[0] == "booted":
			for k, v := range kv {
				o.Info[k] = v
			}
			o.State = StateBooted
		case strings.HasPrefix(fields[0], "state="):
			o.State = kv["state"]
			o.Reason = strings.ReplaceAll(kv["reason"], "_", " ")
			if o.State == "failed" && o.Reason == "" {
				o.Reason = strings.Join(fields[1:], " ")
			}
		}
	}
	if !seenMarker && fwFailure != "" {
		o.State, o.Reason = StateFailed, fwFailure
	}
	return o
}

// ObserveFile reads a serial log file; a missing file means booting.
func ObserveFile(path string) Observation {
	b, err := os.ReadFile(path)
	if err != nil {
		return Observation{State: StateBooting, Info: map[string]string{}}
	}
	// OVMF paints its console with escape sequences and CRs; lines still end in \n.
	return Observe(bytes.NewReader(bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))))
}

// StatusLine is one row of `lab status`.
type StatusLine struct {
	Name, MAC, Firmware, State string
}

// netbootEvent is the part of a netboot.Event line the status reads.
type netbootEvent struct {
	Kind string `json:"kind"`
	MAC  string `json:"mac"`
	File string `json:"file"`
	Err  string `json:"error"`
}

// lastNetbootSteps reads the netboot child's event lines (the last 4 MiB)
// and returns each MAC's latest step, e.g. "tftp.done ipxe.efi".
func lastNetbootSteps(dir string) map[string]string {
	f, err := os.Open(filepath.Join(dir, NetbootEventsFile))
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 4<<20 {
		_, _ = f.Seek(st.Size()-4<<20, io.SeekStart)
	}
	steps := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e netbootEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.MAC == "" || e.Kind == "" {
			continue
		}
		step := e.Kind
		if e.File != "" {
			step += " " + e.File
		}
		if e.Err != "" {
			step += ": " + e.Err
		}
		steps[strings.ToLower(e.MAC)] = step
	}
	return steps
}

// Status reads the lab in dir and returns one line per machine. A machine
// still booting shows its latest netboot step from Onramp's events, e.g.
// "booting (tftp.done ipxe.efi)".
func Status(dir string) ([]StatusLine, *State, error) {
	s, err := ReadState(dir)
	if err != nil {
		return nil, nil, err
	}
	steps := lastNetbootSteps(dir)
	var out []StatusLine
	for _, m := range s.Machines {
		o := ObserveFile(filepath.Join(m.Dir, "serial.log"))
		st := o.String()
		if step, ok := steps[strings.ToLower(m.MAC)]; ok && o.State == StateBooting {
			st = StateBooting + " (" + oneLine(step) + ")"
		}
		switch {
		case !s.Running:
			st = StateOff
		case m.Exit != "" && o.State != StateFailed:
			st = StateFailed + ": " + m.Exit
		}
		out = append(out, StatusLine{Name: m.Name, MAC: m.MAC, Firmware: m.Describe(), State: st})
	}
	return out, s, nil
}
