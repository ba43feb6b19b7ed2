// Package netboot holds what the boot protocols share: how a booting machine is
// identified (Machine, Arch), the small interface through which the protocol
// servers ask the app what a machine gets (Booter), and the event stream that
// becomes each machine's timeline in the UI (Event, Sink).
//
// The protocol packages (netboot/dhcp, netboot/tftp, netboot/httpboot,
// netboot/ipxe) import this package and never decide on their own which
// machine gets what.
package netboot

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// Arch is the client system architecture a firmware announces in DHCP
// option 93 (RFC 4578; IANA "Processor Architecture Types").
type Arch uint16

// Values of option 93 that Onramp serves. Others are reported, not booted.
const (
	ArchBIOS          Arch = 0  // x86 BIOS PXE
	ArchUEFIx86       Arch = 6  // EFI IA32 (rare; served like x64 is not possible)
	ArchUEFIx64       Arch = 7  // EFI BC (x86-64)
	ArchUEFIx64Alt    Arch = 9  // EFI x86-64 (some firmwares send 9 instead of 7)
	ArchUEFIarm64     Arch = 11 // EFI ARM64
	ArchUEFIHTTPx64   Arch = 16 // UEFI HTTP boot, x86-64
	ArchUEFIHTTParm64 Arch = 19 // UEFI HTTP boot, ARM64
	ArchUnknown       Arch = 0xffff
)

// String names the architecture in the words the UI shows.
func (a Arch) String() string {
	switch a {
	case ArchBIOS:
		return "bios"
	case ArchUEFIx86:
		return "uefi-ia32"
	case ArchUEFIx64, ArchUEFIx64Alt:
		return "uefi-x64"
	case ArchUEFIarm64:
		return "uefi-arm64"
	case ArchUEFIHTTPx64:
		return "uefi-http-x64"
	case ArchUEFIHTTParm64:
		return "uefi-http-arm64"
	default:
		return "unknown"
	}
}

// Machine identifies a booting machine as far as the boot protocols can tell.
type Machine struct {
	MAC  net.HardwareAddr
	UUID string // SMBIOS system UUID from DHCP option 97, lower case, "" if absent
	Arch Arch
}

// DecisionKind says what a machine is told to boot.
type DecisionKind string

const (
	// BootKernel boots a kernel + initramfs with a command line (iPXE script).
	BootKernel DecisionKind = "kernel"
	// BootUKI chains a (signed) unified kernel image; its command line is baked in.
	BootUKI DecisionKind = "uki"
	// BootLocal tells the machine to boot from its own disk (iPXE "exit").
	BootLocal DecisionKind = "local"
	// BootEnroll boots the SecureBoot key-enrollment ISO (systemd-boot with
	// secure-boot-enroll force): UEFI HTTP boot clients get the ISO's URL
	// and mount it as a RAM disk; PXE firmware cannot load an ISO over TFTP,
	// so it gets iPXE, whose script sanboots the ISO over HTTP.
	BootEnroll DecisionKind = "enroll"
)

// Decision is what the app wants a machine to boot. Paths are relative to the
// assets root served under /assets/ over HTTP.
type Decision struct {
	Kind    DecisionKind
	Kernel  string   // BootKernel: e.g. "talos/v1.14.1/amd64/vmlinuz"
	Initrd  string   // BootKernel: e.g. "talos/v1.14.1/amd64/initramfs.xz"
	UKI     string   // BootUKI: e.g. "talos/v1.14.1/amd64/uki.signed.efi"
	Cmdline []string // BootKernel: kernel arguments, e.g. "talos.platform=metal"
	ISO     string   // BootEnroll: e.g. "secureboot/enroll.iso"
}

// ErrNotApproved is returned by a Booter for a machine that must not get a boot
// answer (allowlist on, MAC unknown). Servers stay silent and report it.
var ErrNotApproved = errors.New("machine not approved for network boot")

// Booter is asked by the protocol servers what a machine gets. The app
// implements it; tests use a func adapter.
type Booter interface {
	Boot(ctx context.Context, m Machine) (Decision, error)
}

// BooterFunc adapts a function to Booter.
type BooterFunc func(ctx context.Context, m Machine) (Decision, error)

// Boot calls f.
func (f BooterFunc) Boot(ctx context.Context, m Machine) (Decision, error) { return f(ctx, m) }

// EventKind names a step on a machine's timeline, namespaced by protocol.
type EventKind string

const (
	EventDHCPDiscover EventKind = "dhcp.discover"
	EventDHCPOffer    EventKind = "dhcp.offer"
	EventDHCPRequest  EventKind = "dhcp.request"
	EventDHCPAck      EventKind = "dhcp.ack"
	EventDHCPNak      EventKind = "dhcp.nak"
	EventDHCPIgnored  EventKind = "dhcp.ignored" // not approved, not PXE, or malformed
	EventProxyOffer   EventKind = "proxydhcp.offer"
	EventTFTPStart    EventKind = "tftp.start"
	EventTFTPDone     EventKind = "tftp.done"
	EventTFTPError    EventKind = "tftp.error"
	EventHTTPStart    EventKind = "http.start"
	EventHTTPDone     EventKind = "http.done"
	EventHTTPError    EventKind = "http.error"
	EventIPXEScript   EventKind = "ipxe.script"
	EventForeignDHCP  EventKind = "alarm.foreign-dhcp" // another DHCP server seen on the cart network
	EventStuck        EventKind = "netboot.stuck"      // a machine stopped between two boot stages
)

// Event is one step on a machine's timeline. Err holds a plain-words
// explanation for the technician ("the firmware refused the offer (PXE-E16):
// ..."), never a bare Go error string alone.
type Event struct {
	Time     time.Time     `json:"time"`
	Kind     EventKind     `json:"kind"`
	MAC      string        `json:"mac,omitempty"`
	UUID     string        `json:"uuid,omitempty"`
	Arch     string        `json:"arch,omitempty"`
	IP       string        `json:"ip,omitempty"`
	File     string        `json:"file,omitempty"`
	Bytes    int64         `json:"bytes,omitempty"`
	Duration time.Duration `json:"durationNs,omitempty"`
	Iface    string        `json:"iface,omitempty"`
	Detail   string        `json:"detail,omitempty"`
	Err      string        `json:"error,omitempty"`
	// Attrs carries what later stages learn about the machine (vendor,
	// serial, SecureBoot, TPM, ...), keyed by short lower-case names.
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Sink receives events. Emit must not block for long: servers call it on
// their packet paths.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Emit calls f.
func (f SinkFunc) Emit(e Event) { f(e) }

// Discard is a Sink that drops every event.
var Discard Sink = SinkFunc(func(Event) {})

// Recorder is a Sink that keeps every event in memory, for tests and for the
// CLI's summary. It is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// Emit records e.
func (r *Recorder) Emit(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events returns a copy of the recorded events.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}
