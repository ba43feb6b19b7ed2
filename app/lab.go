package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"onramp/lab"
	"onramp/lab/kit"
	"onramp/netboot"
)

// Lab runs the virtual lab for a technician with no servers at hand:
// `onramp lab up` as a child process, which builds QEMU machines on a
// private network and serves Onramp's netboot on it. The machines' boot
// events are read from the lab's event file into the Discover step.
type Lab struct {
	exe      string
	dir      string // the lab's data directory
	machines *Machines
	bus      *Bus
	// netns, cache and simulator are passed to `lab up` when set (--netns,
	// --cache, --simulator); tests use their own namespace name.
	netns, cache, simulator string

	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan struct{}
	err      string
	starting bool
	// onChange is told when the lab starts or stops (netboot status).
	onChange func()
}

// LabStatus is what the lab panel shows.
type LabStatus struct {
	Running        bool         `json:"running"`
	Starting       bool         `json:"starting"`
	Machines       []LabMachine `json:"machines"`
	Error          string       `json:"error,omitempty"`
	PrereqsMissing []string     `json:"prereqsMissing"`
	// ImageKeys are the signing keys of the lab's SecureBoot image, for "Use the
	// virtual lab's image keys" on the Site step.
	ImageKeys *LabImageKeys `json:"imageKeys,omitempty"`
}

// LabImageKeys are the expected signing-key fingerprints of the lab's UKI.
type LabImageKeys struct {
	UKISigningKeyFingerprint string `json:"ukiSigningKeyFingerprint"`
	PCRSigningKeyFingerprint string `json:"pcrSigningKeyFingerprint"`
}

// LabMachine is one virtual machine.
type LabMachine struct {
	Name     string `json:"name"`
	MAC      string `json:"mac"`
	Firmware string `json:"firmware"`
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
}

// LabRequest is Lab.Up's argument.
type LabRequest struct {
	Machines int    `json:"machines"`
	Firmware string `json:"firmware"` // uefi | uefi-secureboot | bios | mix
	TPM      bool   `json:"tpm"`
}

// NewLab returns the service; the lab lives in dataDir/lab.
func NewLab(exe, dataDir string, machines *Machines, bus *Bus) *Lab {
	return &Lab{exe: exe, dir: filepath.Join(dataDir, "lab"), machines: machines, bus: bus}
}

// Status reports the lab and its machines.
func (l *Lab) Status() (LabStatus, error) {
	l.mu.Lock()
	st := LabStatus{Running: l.cancel != nil && !l.starting, Starting: l.starting, Error: l.err}
	l.mu.Unlock()
	st.ImageKeys = &LabImageKeys{UKISigningKeyFingerprint: kit.LabUKISigningKeyFingerprint, PCRSigningKeyFingerprint: kit.LabPCRSigningKeyFingerprint}
	st.Machines = []LabMachine{}
	st.PrereqsMissing = []string{}
	for _, p := range LabPrereqs() {
		if !p.Present {
			st.PrereqsMissing = append(st.PrereqsMissing, p.Name+": "+p.Hint)
		}
	}
	if os.Geteuid() != 0 {
		st.PrereqsMissing = append(st.PrereqsMissing, "root: the lab creates a network namespace and taps")
	}
	lines, _, err := lab.Status(l.dir)
	if err == nil {
		for _, ln := range lines {
			m := LabMachine{Name: ln.Name, MAC: ln.MAC, Firmware: ln.Firmware, State: ln.State}
			if s, reason, ok := strings.Cut(ln.State, ": "); ok {
				m.State, m.Reason = s, reason
			}
			st.Machines = append(st.Machines, m)
		}
	}
	return st, nil
}

// Up starts the lab. It returns at once; the lab panel follows "lab:status".
func (l *Lab) Up(req LabRequest) (LabStatus, error) {
	if req.Machines < 1 || req.Machines > 6 {
		return LabStatus{}, fmt.Errorf("machines: %d is not between 1 and 6", req.Machines)
	}
	args := []string{"lab", "up", "--data", l.dir, "--machines", strconv.Itoa(req.Machines)}
	switch req.Firmware {
	case "mix":
		args = append(args, "--mix")
	case "uefi", "uefi-secureboot", "bios":
		args = append(args, "--firmware", req.Firmware)
	default:
		return LabStatus{}, fmt.Errorf("firmware: %q is not one of uefi, uefi-secureboot, bios, mix", req.Firmware)
	}
	if req.TPM {
		args = append(args, "--tpm")
	}
	for _, o := range []struct{ flag, value string }{{"--netns", l.netns}, {"--cache", l.cache}, {"--simulator", l.simulator}} {
		if o.value != "" {
			args = append(args, o.flag, o.value)
		}
	}
	if st, _ := l.Status(); len(st.PrereqsMissing) > 0 {
		return st, errors.New("the lab cannot start here: " + strings.Join(st.PrereqsMissing, "; "))
	}
	l.mu.Lock()
	if l.cancel != nil {
		l.mu.Unlock()
		return l.Status()
	}
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		l.mu.Unlock()
		return LabStatus{}, fmt.Errorf("start lab: %w", err)
	}
	// Events of an earlier run must not show as new machines.
	os.Remove(filepath.Join(l.dir, lab.NetbootEventsFile))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, l.exe, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stderr tail
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		l.mu.Unlock()
		return LabStatus{}, fmt.Errorf("start lab: %w", err)
	}
	l.cancel, l.done, l.err, l.starting = cancel, make(chan struct{}), "", true
	l.mu.Unlock()
	go l.follow(ctx)
	go func() {
		err := cmd.Wait()
		l.mu.Lock()
		if err != nil && l.cancel != nil {
			l.err = "the lab stopped: " + stderr.lastError()
		}
		l.cancel, l.starting = nil, false
		close(l.done)
		l.mu.Unlock()
		l.publish()
	}()
	l.publish()
	return l.Status()
}

// Down stops the lab and waits for it to clean up.
func (l *Lab) Down() (LabStatus, error) {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return l.Status()
	}
	cancel()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
	}
	return l.Status()
}

func (l *Lab) close() { l.Down() }

func (l *Lab) publish() {
	if l.bus != nil {
		st, _ := l.Status()
		l.bus.Publish("lab:status", st)
	}
	if l.onChange != nil {
		l.onChange()
	}
}

// netnsFor returns the network namespace of the running lab when mac is one
// of its machines, else "": the lab's guests are only reachable from inside it.
func (l *Lab) netnsFor(mac string) string {
	if !l.running() {
		return ""
	}
	st, err := lab.ReadState(l.dir)
	if err != nil || !st.Running || st.NetNS == "" {
		return ""
	}
	for _, m := range st.Machines {
		if equalMAC(m.MAC, mac) {
			return st.NetNS
		}
	}
	return ""
}

// running reports whether the lab child runs.
func (l *Lab) running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cancel != nil
}

// follow tails the lab's netboot event file into the machine registry and
// republishes the lab's status every few seconds while it runs.
func (l *Lab) follow(ctx context.Context) {
	path := filepath.Join(l.dir, lab.NetbootEventsFile)
	var f *os.File
	var r *bufio.Reader
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			if f != nil {
				f.Close()
			}
			return
		case <-tick.C:
		}
		if f == nil {
			var err error
			if f, err = os.Open(path); err != nil {
				f = nil
				continue
			}
			r = bufio.NewReaderSize(f, 64<<10)
			l.mu.Lock()
			l.starting = false // netboot is up: the machines are booting
			l.mu.Unlock()
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				// Partial line: step back and read it whole next time.
				if len(line) > 0 {
					f.Seek(-int64(len(line)), io.SeekCurrent)
					r.Reset(f)
				}
				break
			}
			var e netboot.Event
			if json.Unmarshal(line, &e) == nil {
				l.machines.Emit(e)
			}
		}
		if n++; n%3 == 0 {
			l.publish()
		}
	}
}
