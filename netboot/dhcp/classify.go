package dhcp

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"onramp/netboot"
)

// Client kind, by what the firmware or boot loader says about itself.
const (
	vendorPXE  = "PXEClient"  // option 60 prefix of PXE ROMs and iPXE
	vendorHTTP = "HTTPClient" // option 60 prefix of UEFI HTTP boot
	userIPXE   = "iPXE"       // option 77 of iPXE
)

// Request is what Classify learns from one client packet. It holds no I/O and
// is the only input to the decision and encode steps.
type Request struct {
	Type        dhcpv4.MessageType
	MAC         net.HardwareAddr
	XID         dhcpv4.TransactionID
	Arch        netboot.Arch // ArchUnknown when option 93 is absent
	UUID        string       // option 97, lower case 8-4-4-4-12, "" if absent or not a UUID
	VendorClass string       // option 60 as sent
	UserClass   []string     // option 77
	IPXE        bool         // user class "iPXE": the second stage, wants a script URL
	HTTPBoot    bool         // vendor class HTTPClient: UEFI HTTP boot, wants a URL
	PXE         bool         // vendor class PXEClient (firmware PXE or iPXE)
	Relayed     bool         // giaddr set: came through a relay agent
	GIAddr      net.IP
	CIAddr      net.IP
	RequestedIP net.IP // option 50, nil if absent
	ServerID    net.IP // option 54, nil if absent
	Broadcast   bool   // the client asked for broadcast replies (flags bit 15)
}

// Bootable reports whether the client is a network-boot client that a proxy
// server may answer.
func (r Request) Bootable() bool { return r.PXE || r.HTTPBoot || r.IPXE }

// Machine is the identity the app is asked about.
func (r Request) Machine() netboot.Machine {
	return netboot.Machine{MAC: r.MAC, UUID: r.UUID, Arch: r.Arch}
}

// Errors from Classify. They are wrapped with detail; test with errors.Is.
var (
	ErrNotRequest   = errors.New("not a client request (BOOTREPLY)")
	ErrNoMsgType    = errors.New("no DHCP message type (option 53): a plain BOOTP packet")
	ErrBadHWAddr    = errors.New("hardware address is not a 6-byte Ethernet MAC")
	ErrBadArch      = errors.New("client architecture (option 93) is malformed")
	ErrBadUUID      = errors.New("machine UUID (option 97) is malformed")
	ErrBadRequested = errors.New("requested address (option 50) is malformed")
)

// Classify reads a client packet. It returns an error for packets that cannot
// be answered (replies, BOOTP without a message type, non-Ethernet hardware,
// malformed PXE options) so that the server ignores them with a reason.
func Classify(pkt *dhcpv4.DHCPv4) (Request, error) {
	var r Request
	if pkt == nil {
		return r, errors.New("classify packet: nil packet")
	}
	if pkt.OpCode != dhcpv4.OpcodeBootRequest {
		return r, fmt.Errorf("classify packet: %w", ErrNotRequest)
	}
	r.Type = pkt.MessageType()
	if r.Type == dhcpv4.MessageTypeNone {
		return r, fmt.Errorf("classify packet: %w", ErrNoMsgType)
	}
	if len(pkt.ClientHWAddr) != 6 || isZero(pkt.ClientHWAddr) {
		return r, fmt.Errorf("classify packet: %w (got %d bytes)", ErrBadHWAddr, len(pkt.ClientHWAddr))
	}
	r.MAC = append(net.HardwareAddr(nil), pkt.ClientHWAddr...)
	r.XID = pkt.TransactionID
	r.Broadcast = pkt.IsBroadcast()
	if ip := pkt.GatewayIPAddr.To4(); ip != nil && !ip.IsUnspecified() {
		r.Relayed, r.GIAddr = true, ip
	}
	if ip := pkt.ClientIPAddr.To4(); ip != nil && !ip.IsUnspecified() {
		r.CIAddr = ip
	}

	r.Arch = netboot.ArchUnknown
	if v := pkt.Options.Get(dhcpv4.OptionClientSystemArchitectureType); v != nil {
		// RFC 4578 §2.1: a list of 16-bit types; the first is the one booting.
		if len(v) < 2 || len(v)%2 != 0 {
			return r, fmt.Errorf("classify packet from %s: %w (%d bytes)", r.MAC, ErrBadArch, len(v))
		}
		r.Arch = netboot.Arch(uint16(v[0])<<8 | uint16(v[1]))
	}
	if v := pkt.Options.Get(dhcpv4.OptionClientMachineIdentifier); v != nil {
		u, err := parseUUID(v)
		if err != nil {
			return r, fmt.Errorf("classify packet from %s: %w", r.MAC, err)
		}
		r.UUID = u
	}
	if v := pkt.Options.Get(dhcpv4.OptionRequestedIPAddress); v != nil {
		if len(v) != 4 {
			return r, fmt.Errorf("classify packet from %s: %w (%d bytes)", r.MAC, ErrBadRequested, len(v))
		}
		r.RequestedIP = net.IP(append([]byte(nil), v...))
	}
	if v := pkt.Options.Get(dhcpv4.OptionServerIdentifier); len(v) == 4 {
		r.ServerID = net.IP(append([]byte(nil), v...))
	}
	r.VendorClass = pkt.ClassIdentifier()
	r.PXE = strings.HasPrefix(r.VendorClass, vendorPXE)
	r.HTTPBoot = strings.HasPrefix(r.VendorClass, vendorHTTP)
	r.UserClass = pkt.UserClass()
	for _, uc := range r.UserClass {
		if uc == userIPXE {
			r.IPXE = true
		}
	}
	return r, nil
}

// parseUUID reads option 97: type 0 followed by a 16-byte UUID (RFC 4578 §2.3).
// RFC 4578 says the UUID follows the EFI GUID layout, whose first three
// fields are little-endian, and that is what EDK2 and iPXE send (iPXE's
// dhcp.c "uuid_mangle"s the SMBIOS UUID before sending it). Seen in the
// virtual lab: SMBIOS 0a770000-0000-4000-8000-... arrives as bytes that
// print 0000770a-0000-0040-8000-.... We swap the three fields back so the
// UUID reads as dmidecode, iPXE's ${uuid} and Talos show it: one machine,
// one ID across DHCP, the iPXE script URL and maintenance mode.
func parseUUID(v []byte) (string, error) {
	if len(v) != 17 || v[0] != 0 {
		return "", fmt.Errorf("%w: want type 0 and 16 bytes, got %d bytes", ErrBadUUID, len(v))
	}
	b := v[1:]
	if isZero(b) {
		return "", nil
	}
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%x-%x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8:10], b[10:16]), nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
