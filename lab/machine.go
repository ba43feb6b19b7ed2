package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"onramp/lab/netns"
)

// Firmware is the guest's firmware type.
type Firmware string

// Firmware types.
const (
	FirmwareUEFI           Firmware = "uefi"            // OVMF without SecureBoot
	FirmwareUEFISecureBoot Firmware = "uefi-secureboot" // OVMF secboot build with SMM
	FirmwareBIOS           Firmware = "bios"            // SeaBIOS
)

// ParseFirmware checks a firmware name.
func ParseFirmware(s string) (Firmware, error) {
	switch f := Firmware(s); f {
	case FirmwareUEFI, FirmwareUEFISecureBoot, FirmwareBIOS:
		return f, nil
	}
	return "", fmt.Errorf("unknown firmware %q (want uefi, uefi-secureboot or bios)", s)
}

// Keys is the SecureBoot key scenario of a uefi-secureboot machine.
type Keys string

// SecureBoot scenarios.
const (
	// KeysSetup: empty variable store, the firmware is in setup mode and
	// SecureBoot is off until a PK is enrolled.
	KeysSetup Keys = "setup"
	// KeysVendor: Microsoft's KEK and db (what servers ship with); Debian's
	// unsigned iPXE and anything signed with the site key are refused.
	KeysVendor Keys = "vendor"
	// KeysSite: PK/KEK/db hold only the site's key (Debian's snakeoil test
	// key for now); only images signed with it boot.
	KeysSite Keys = "site"
)

// ParseKeys checks a key scenario name.
func ParseKeys(s string) (Keys, error) {
	switch k := Keys(s); k {
	case KeysSetup, KeysVendor, KeysSite:
		return k, nil
	}
	return "", fmt.Errorf("unknown SecureBoot keys %q (want setup, vendor or site)", s)
}

// OVMF and QEMU files from Debian's ovmf and qemu-system-x86 packages.
const (
	OVMFCode        = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFCodeSecBoot = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	OVMFVarsEmpty   = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	OVMFVarsMS      = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	OVMFVarsSite    = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
)

// Machine is one virtual server of the lab.
type Machine struct {
	Name           string   `json:"name"`
	MAC            string   `json:"mac"` // 52:54:00:77:00:NN
	Firmware       Firmware `json:"firmware"`
	SecureBootKeys Keys     `json:"secureBootKeys,omitempty"` // uefi-secureboot only
	TPM            bool     `json:"tpm"`
	DiskBytes      int64    `json:"diskBytes"`
	MemoryMB       int      `json:"memoryMB"`
	Serial         string   `json:"serial"`
	Vendor         string   `json:"vendor"`
	Product        string   `json:"product"`
	UUID           string   `json:"uuid"`
}

// Describe is the firmware column of `lab status`.
func (m Machine) Describe() string {
	s := string(m.Firmware)
	if m.Firmware == FirmwareUEFISecureBoot {
		s += "/" + string(m.SecureBootKeys)
	}
	if m.TPM {
		s += "+tpm"
	}
	return s
}

// NewMachine returns machine number i (1-based) with the lab's naming: name
// lab-N, MAC 52:54:00:77:00:NN, serial LAB-000N, a fixed UUID.
func NewMachine(i int, fw Firmware, keys Keys, tpm bool, diskBytes int64) Machine {
	if fw == FirmwareUEFISecureBoot && keys == "" {
		keys = KeysSite
	}
	if fw != FirmwareUEFISecureBoot {
		keys = ""
	}
	return Machine{
		Name:           fmt.Sprintf("lab-%d", i),
		MAC:            fmt.Sprintf("52:54:00:77:00:%02x", i&0xff),
		Firmware:       fw,
		SecureBootKeys: keys,
		TPM:            tpm,
		DiskBytes:      diskBytes,
		MemoryMB:       768,
		Serial:         fmt.Sprintf("LAB-%04d", i),
		Vendor:         "Onramp Lab",
		Product:        "Virtual Server " + strings.ToUpper(string(fw)),
		UUID:           fmt.Sprintf("0a770000-0000-4000-8000-%012x", i),
	}
}

// Validate checks the fields QEMU needs.
func (m Machine) Validate() error {
	if m.Name == "" || strings.ContainsAny(m.Name, "/ \t\n") {
		return fmt.Errorf("machine name %q: empty or has / or spaces", m.Name)
	}
	if _, err := net.ParseMAC(m.MAC); err != nil {
		return fmt.Errorf("machine %s: %w", m.Name, err)
	}
	if _, err := ParseFirmware(string(m.Firmware)); err != nil {
		return fmt.Errorf("machine %s: %w", m.Name, err)
	}
	if m.Firmware == FirmwareUEFISecureBoot {
		if _, err := ParseKeys(string(m.SecureBootKeys)); err != nil {
			return fmt.Errorf("machine %s: %w", m.Name, err)
		}
	}
	return nil
}

// varsTemplate is the OVMF variable store a machine's copy starts from.
func (m Machine) varsTemplate() string {
	if m.Firmware != FirmwareUEFISecureBoot {
		return OVMFVarsEmpty
	}
	switch m.SecureBootKeys {
	case KeysVendor:
		return OVMFVarsMS
	case KeysSite:
		return OVMFVarsSite
	default:
		return OVMFVarsEmpty
	}
}

// DirectBoot boots a kernel without the network (QEMU -kernel/-initrd).
type DirectBoot struct {
	Kernel, Initrd, Cmdline string
}

// VM runs one Machine under QEMU with TCG (this kind of host has no usable
// KVM), supervising swtpm for machines with a TPM.
type VM struct {
	Machine Machine
	Dir     string // per-machine state: vars.fd, disk.raw, serial.log, tpm/
	NetNS   string // namespace holding Tap; "" with Tap "" means no network
	Tap     string
	// UserNet gives the guest QEMU's user-mode network with restrict=on (no
	// traffic leaves QEMU) instead of a tap; for direct-boot tests.
	UserNet bool
	Direct  *DirectBoot
	// HTTPBootOnly turns OVMF's PXE boot options off (fw_cfg knobs
	// opt/org.tianocore/IPv4PXESupport and IPv6PXESupport = n) so the
	// firmware goes straight to UEFI HTTP boot, like a server whose boot
	// order was set to HTTP boot first; otherwise OVMF spends ~2 min under
	// TCG on PXE over IPv4 and IPv6 before it tries HTTP.
	HTTPBootOnly bool
	QEMU         string // default qemu-system-x86_64
	Log          *slog.Logger
}

// Paths inside VM.Dir.
func (v *VM) SerialLog() string { return filepath.Join(v.Dir, "serial.log") }
func (v *VM) varsPath() string  { return filepath.Join(v.Dir, "vars.fd") }
func (v *VM) diskPath() string  { return filepath.Join(v.Dir, "disk.raw") }
func (v *VM) tpmDir() string    { return filepath.Join(v.Dir, "tpm") }

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Args returns QEMU's arguments for the machine; tpmSock is the swtpm
// control socket ("" without TPM).
func (v *VM) Args(tpmSock string) []string {
	m := v.Machine
	mem := m.MemoryMB
	if mem <= 0 {
		mem = 768
	}
	a := []string{
		"-name", qemuEscape(m.Name),
		"-accel", "tcg", "-m", strconv.Itoa(mem), "-smp", "1",
		"-display", "none", "-monitor", "none", "-no-reboot", "-nodefaults",
		"-serial", "file:" + v.SerialLog(),
		"-uuid", m.UUID,
		"-smbios", fmt.Sprintf("type=1,manufacturer=%s,product=%s,serial=%s,uuid=%s",
			qemuEscape(m.Vendor), qemuEscape(m.Product), qemuEscape(m.Serial), m.UUID),
		"-device", "virtio-rng-pci",
	}
	switch m.Firmware {
	case FirmwareBIOS:
		a = append(a, "-machine", "pc")
	case FirmwareUEFI:
		a = append(a, "-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+qemuEscape(v.varsPath()))
	case FirmwareUEFISecureBoot:
		a = append(a, "-machine", "q35,smm=on",
			"-global", "driver=cfi.pflash01,property=secure,value=on",
			"-global", "ICH9-LPC.disable_s3=1",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCodeSecBoot,
			"-drive", "if=pflash,format=raw,unit=1,file="+qemuEscape(v.varsPath()))
	}
	if m.DiskBytes > 0 {
		a = append(a, "-drive", "if=none,id=disk0,format=raw,file="+qemuEscape(v.diskPath()),
			"-device", "virtio-blk-pci,drive=disk0,serial="+qemuEscape("DISK-"+m.Serial))
	}
	switch {
	case v.Tap != "":
		// romfile= (empty): no iPXE option ROM, so the firmware's own PXE
		// client runs (OVMF's, or SeaBIOS' which has none and needs the ROM).
		rom := ",romfile="
		if m.Firmware == FirmwareBIOS {
			rom = "" // SeaBIOS has no PXE client of its own: keep QEMU's iPXE ROM
		}
		a = append(a, "-netdev", "tap,id=net0,ifname="+v.Tap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=net0,mac="+m.MAC+",bootindex=1"+rom)
	case v.UserNet:
		a = append(a, "-netdev", "user,id=net0,restrict=on",
			"-device", "virtio-net-pci,netdev=net0,mac="+m.MAC+",romfile=")
	default:
		a = append(a, "-nic", "none")
	}
	if v.HTTPBootOnly && m.Firmware != FirmwareBIOS {
		a = append(a, "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
			"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
	}
	if tpmSock != "" {
		a = append(a, "-chardev", "socket,id=chrtpm,path="+qemuEscape(tpmSock),
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", "tpm-tis,tpmdev=tpm0")
	}
	if d := v.Direct; d != nil {
		a = append(a, "-kernel", d.Kernel)
		if d.Initrd != "" {
			a = append(a, "-initrd", d.Initrd)
		}
		if d.Cmdline != "" {
			a = append(a, "-append", d.Cmdline)
		}
	}
	return a
}

// ErrExited is wrapped by Run when QEMU exits on its own (guest powered off
// or panicked with -no-reboot, or QEMU failed).
var ErrExited = errors.New("qemu exited")

// prepare creates the machine directory, its vars copy and sparse disk.
func (v *VM) prepare() error {
	if err := v.Machine.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(v.Dir, 0o755); err != nil {
		return fmt.Errorf("prepare machine %s: %w", v.Machine.Name, err)
	}
	if v.Machine.Firmware != FirmwareBIOS {
		if _, err := os.Stat(v.varsPath()); errors.Is(err, os.ErrNotExist) {
			b, err := os.ReadFile(v.Machine.varsTemplate())
			if err != nil {
				return fmt.Errorf("prepare machine %s: %w", v.Machine.Name, err)
			}
			if err := os.WriteFile(v.varsPath(), b, 0o644); err != nil {
				return fmt.Errorf("prepare machine %s: %w", v.Machine.Name, err)
			}
		}
	}
	if v.Machine.DiskBytes > 0 {
		f, err := os.OpenFile(v.diskPath(), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("prepare machine %s: %w", v.Machine.Name, err)
		}
		st, _ := f.Stat()
		if st != nil && st.Size() < v.Machine.DiskBytes {
			err = f.Truncate(v.Machine.DiskBytes) // sparse
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("prepare machine %s: %w", v.Machine.Name, err)
		}
	}
	// A fresh serial log per boot.
	if err := os.Remove(v.SerialLog()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("prepare machine %s: %w", v.Machine.Name, err)
	}
	return nil
}

// Run boots the machine and returns when ctx is done (nil, after stopping
// QEMU and swtpm) or when QEMU exits on its own (an error wrapping
// ErrExited with QEMU's stderr).
func (v *VM) Run(ctx context.Context) error {
	log := v.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "lab-vm", "machine", v.Machine.Name)
	if err := v.prepare(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var tpmSock string
	tpmDone := make(chan error, 1)
	if v.Machine.TPM {
		var err error
		tpmSock, err = v.startTPM(ctx, log, tpmDone)
		if err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(tpmSock))
	} else {
		tpmDone <- nil
	}

	qemu := v.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	argv := append([]string{qemu}, v.Args(tpmSock)...)
	var cmd *exec.Cmd
	if v.NetNS != "" {
		cmd = netns.Command(ctx, v.NetNS, argv...)
	} else {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	var stderr bytes.Buffer
	cmd.Stdout = io.Discard
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 8 << 10}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	log.Info("starting machine", "mac", v.Machine.MAC, "firmware", v.Machine.Describe())
	if err := cmd.Start(); err != nil {
		cancel()
		<-tpmDone
		return fmt.Errorf("start qemu for %s: %w", v.Machine.Name, err)
	}
	werr := cmd.Wait()
	stopped := ctx.Err() != nil
	cancel()
	<-tpmDone
	if stopped {
		log.Info("machine stopped")
		return nil
	}
	return fmt.Errorf("machine %s: %w: %v: %s", v.Machine.Name, ErrExited, werr, strings.TrimSpace(stderr.String()))
}

// RuntimeDir holds the lab's sockets (swtpm control sockets) for namespace
// ns: a short path, since unix socket paths are limited to 108 bytes.
func RuntimeDir(ns string) string { return filepath.Join(os.TempDir(), "onramp-lab-"+ns) }

// startTPM runs swtpm in the foreground as a child (stopped with ctx) and
// waits for its control socket in RuntimeDir(NetNS)/<name>/ (or a temporary
// directory for a VM outside a namespace).
func (v *VM) startTPM(ctx context.Context, log *slog.Logger, done chan<- error) (string, error) {
	state := v.tpmDir()
	if err := os.MkdirAll(state, 0o700); err != nil {
		return "", fmt.Errorf("start swtpm for %s: %w", v.Machine.Name, err)
	}
	var sockDir string
	var err error
	if v.NetNS != "" {
		// Known to Down, which removes it after a crashed run.
		sockDir = filepath.Join(RuntimeDir(v.NetNS), v.Machine.Name)
		_ = os.RemoveAll(sockDir)
		err = os.MkdirAll(sockDir, 0o700)
	} else {
		sockDir, err = os.MkdirTemp("", "onramp-tpm-")
	}
	if err != nil {
		return "", fmt.Errorf("start swtpm for %s: %w", v.Machine.Name, err)
	}
	sock := filepath.Join(sockDir, "swtpm.sock")
	argv := []string{"swtpm", "socket", "--tpm2",
		"--tpmstate", "dir=" + qemuEscape(state),
		"--ctrl", "type=unixio,path=" + qemuEscape(sock),
		"--pid", "file=" + qemuEscape(filepath.Join(sockDir, "swtpm.pid")),
		"--log", "file=" + qemuEscape(filepath.Join(v.Dir, "swtpm.log")) + ",level=1"}
	// Inside the lab namespace (it needs no network) so that `lab down`
	// finds a crashed run's swtpm with the namespace's other processes.
	var cmd *exec.Cmd
	if v.NetNS != "" {
		cmd = netns.Command(ctx, v.NetNS, argv...)
	} else {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4 << 10}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(sockDir)
		return "", fmt.Errorf("start swtpm for %s: %w", v.Machine.Name, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		done <- waitErr
		close(exited)
	}()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(sock); err == nil {
			log.Debug("swtpm ready", "socket", sock)
			return sock, nil
		}
		select {
		case <-exited:
			os.RemoveAll(sockDir)
			return "", fmt.Errorf("start swtpm for %s: exited: %v: %s", v.Machine.Name, waitErr, stderr.String())
		case <-deadline.C:
			_ = cmd.Process.Kill()
			os.RemoveAll(sockDir)
			return "", fmt.Errorf("start swtpm for %s: no control socket after 10s", v.Machine.Name)
		case <-ctx.Done():
			os.RemoveAll(sockDir)
			return "", fmt.Errorf("start swtpm for %s: %w", v.Machine.Name, ctx.Err())
		case <-tick.C:
		}
	}
}

// limitedBuffer keeps the first max bytes written (QEMU's stderr).
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}
