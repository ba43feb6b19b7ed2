package app

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// BuildInfo is stamped into the binary by the Makefile (-ldflags -X).
type BuildInfo struct {
	Version string
	Commit  string
}

// Mode is how Onramp is being shown.
type Mode string

const (
	ModeDesktop Mode = "desktop"
	ModeKiosk   Mode = "kiosk"
	ModeWeb     Mode = "web"
)

// System reports what Onramp is and what this machine lets it do.
type System struct {
	build   BuildInfo
	dataDir string
	mode    Mode
}

// NewSystem returns the System service.
func NewSystem(build BuildInfo, dataDir string, mode Mode) *System {
	return &System{build: build, dataDir: dataDir, mode: mode}
}

// SystemInfo is System.Info's answer.
type SystemInfo struct {
	Version           string   `json:"version"`
	Commit            string   `json:"commit"`
	GoVersion         string   `json:"goVersion"`
	MachineryVersion  string   `json:"machineryVersion"`
	DataDir           string   `json:"dataDir"`
	Mode              Mode     `json:"mode"`
	Root              bool     `json:"root"`
	CapNetBindService bool     `json:"capNetBindService"`
	CapNetRaw         bool     `json:"capNetRaw"`
	LabPrereqs        []Prereq `json:"labPrereqs"`
}

// Prereq is one thing the virtual lab needs on this machine.
type Prereq struct {
	Name    string `json:"name"`
	Present bool   `json:"present"`
	Path    string `json:"path"`
	Hint    string `json:"hint"`
}

// Info describes this Onramp and this machine.
func (s *System) Info() (SystemInfo, error) {
	eff := effectiveCaps()
	return SystemInfo{
		Version:           s.build.Version,
		Commit:            s.build.Commit,
		GoVersion:         runtime.Version(),
		MachineryVersion:  ModuleVersion("github.com/siderolabs/talos/pkg/machinery"),
		DataDir:           s.dataDir,
		Mode:              s.mode,
		Root:              os.Geteuid() == 0,
		CapNetBindService: eff&(1<<capNetBindService) != 0,
		CapNetRaw:         eff&(1<<capNetRaw) != 0,
		LabPrereqs:        LabPrereqs(),
	}, nil
}

// ModuleVersion reports the version of a dependency linked into this binary,
// or "unknown" (e.g. in tests, where build info lacks dependencies).
func ModuleVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return "unknown"
}

// Linux capability numbers (linux/capability.h).
const (
	capNetBindService = 10
	capNetRaw         = 13
)

// effectiveCaps reads CapEff from /proc/self/status; 0 if unreadable.
func effectiveCaps() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0
			}
			return n
		}
	}
	return 0
}

// LabPrereqs checks the tools and firmware files the virtual lab uses.
func LabPrereqs() []Prereq {
	type want struct{ name, bin, file, pkg string }
	wants := []want{
		{"QEMU", "qemu-system-x86_64", "", "qemu-system-x86"},
		{"OVMF (UEFI firmware)", "", "/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"},
		{"OVMF SecureBoot firmware", "", "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "ovmf"},
		{"swtpm (software TPM)", "swtpm", "", "swtpm"},
		{"iPXE binaries", "", "/usr/lib/ipxe/ipxe.efi", "ipxe"},
		{"iproute2", "ip", "", "iproute2"},
	}
	out := make([]Prereq, 0, len(wants))
	for _, w := range wants {
		p := Prereq{Name: w.name, Hint: "install the Debian package " + w.pkg}
		if w.bin != "" {
			if path, err := exec.LookPath(w.bin); err == nil {
				p.Present, p.Path = true, path
			}
		} else if _, err := os.Stat(w.file); err == nil {
			p.Present, p.Path = true, w.file
		}
		if p.Present {
			p.Hint = ""
		}
		out = append(out, p)
	}
	return out
}
