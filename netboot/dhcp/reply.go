package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"onramp/netboot"
)

// Boot file names of Debian's iPXE package, served over TFTP.
const (
	FileBIOS     = "undionly.kpxe" // BIOS PXE: chain iPXE through the NIC's UNDI
	FileUEFIx64  = "ipxe.efi"
	FileUEFIarm  = "snp.efi"
	pxeDiscovery = 6 // PXE vendor sub-option: PXE_DISCOVERY_CONTROL
)

// ErrNoBootFile means the request is not one Onramp can boot (unknown
// architecture, not a boot client, or the app said "boot from disk" to the
// firmware stage). The server still assigns an address in isolated mode.
var ErrNoBootFile = errors.New("no boot file for this client")

// Boot is the boot part of a reply.
type Boot struct {
	File       string // file field and option 67: a TFTP name or an http:// URL
	TFTP       bool   // File is a TFTP name: siaddr and option 66 name the server
	HTTPClient bool   // UEFI HTTP boot: the reply must carry option 60 "HTTPClient"
}

// BootFor picks what a client is told to load (the decide step). serverIP
// and httpPort are where Onramp's TFTP and HTTP servers listen.
func BootFor(r Request, d netboot.Decision, serverIP net.IP, httpPort int) (Boot, error) {
	base := "http://" + net.JoinHostPort(serverIP.String(), strconv.Itoa(httpPort))
	switch {
	case r.IPXE:
		// Second stage: iPXE fetches its per-machine script. iPXE also sends
		// "PXEClient" in option 60, so this case must come first.
		// The architecture travels along: the script request is a fresh
		// HTTP request, and the app's answer depends on BIOS vs UEFI.
		q := url.Values{"mac": {r.MAC.String()}}
		if r.UUID != "" {
			q.Set("uuid", r.UUID)
		}
		if r.Arch != netboot.ArchUnknown {
			q.Set("arch", strconv.Itoa(int(r.Arch)))
		}
		return Boot{File: base + "/ipxe?" + q.Encode()}, nil
	case r.HTTPBoot:
		if d.Kind == netboot.BootLocal {
			return Boot{}, fmt.Errorf("pick boot file: %w (the app says boot from disk)", ErrNoBootFile)
		}
		if d.Kind == netboot.BootUKI && d.UKI != "" {
			return Boot{File: base + "/assets/" + escapePath(d.UKI), HTTPClient: true}, nil
		}
		if d.Kind == netboot.BootEnroll && d.ISO != "" {
			// EDK2's HttpBootDxe downloads the ISO, registers it as a RAM
			// disk (virtual CD, from the reply's Content-Type
			// application/vnd.efi-iso) and boots its El Torito EFI image.
			return Boot{File: base + "/assets/" + escapePath(d.ISO), HTTPClient: true}, nil
		}
		switch r.Arch {
		case netboot.ArchUEFIHTTPx64:
			return Boot{File: base + "/boot/" + FileUEFIx64, HTTPClient: true}, nil
		case netboot.ArchUEFIHTTParm64:
			return Boot{File: base + "/boot/" + FileUEFIarm, HTTPClient: true}, nil
		}
		return Boot{}, fmt.Errorf("pick boot file: %w: HTTP boot client with architecture %d (%s)", ErrNoBootFile, r.Arch, r.Arch)
	case r.PXE:
		// BootEnroll lands here too: PXE firmware loads only an EFI
		// binary over TFTP, never an ISO, so it gets iPXE, and the iPXE
		// script sanboots the ISO over HTTP.
		if d.Kind == netboot.BootLocal {
			return Boot{}, fmt.Errorf("pick boot file: %w (the app says boot from disk)", ErrNoBootFile)
		}
		switch r.Arch {
		case netboot.ArchBIOS:
			return Boot{File: FileBIOS, TFTP: true}, nil
		case netboot.ArchUEFIx64, netboot.ArchUEFIx64Alt:
			return Boot{File: FileUEFIx64, TFTP: true}, nil
		case netboot.ArchUEFIarm64:
			return Boot{File: FileUEFIarm, TFTP: true}, nil
		}
		return Boot{}, fmt.Errorf("pick boot file: %w: PXE client with architecture %d (%s)", ErrNoBootFile, r.Arch, r.Arch)
	}
	return Boot{}, fmt.Errorf("pick boot file: %w: not a network-boot client", ErrNoBootFile)
}

// escapePath escapes each segment of a relative asset path for a URL.
func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}

// Lease is the address part of a full-DHCP reply.
type Lease struct {
	ServerIP  net.IP
	YourIP    net.IP
	Mask      net.IPMask
	LeaseTime time.Duration
	Router    []net.IP
	DNS       []net.IP
}

func baseReply(r Request, t dhcpv4.MessageType, serverIP net.IP) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        iana.HWTypeEthernet,
		TransactionID: r.XID,
		ClientHWAddr:  append(net.HardwareAddr(nil), r.MAC...),
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       dhcpv4.Options{},
	}
	if r.GIAddr != nil {
		// RFC 2131 §4.1: the reply carries giaddr back to the relay agent.
		d.GatewayIPAddr = r.GIAddr
	}
	if r.Broadcast {
		d.SetBroadcast()
	}
	d.UpdateOption(dhcpv4.OptMessageType(t))
	d.UpdateOption(dhcpv4.OptServerIdentifier(serverIP.To4()))
	return d
}

func addBoot(d *dhcpv4.DHCPv4, b Boot, serverIP net.IP) {
	if b.File == "" {
		return
	}
	// The file field holds 127 characters; a longer URL goes in option 67 only.
	if len(b.File) <= 127 {
		d.BootFileName = b.File
	}
	d.UpdateOption(dhcpv4.OptBootFileName(b.File))
	if b.TFTP {
		d.ServerIPAddr = serverIP.To4()
		d.UpdateOption(dhcpv4.OptTFTPServerName(serverIP.String()))
	}
	if b.HTTPClient {
		// UEFI HTTP boot (EDK2 HttpBootDxe) only takes offers that echo
		// option 60 "HTTPClient".
		d.UpdateOption(dhcpv4.OptClassIdentifier(vendorHTTP))
	}
}

func addLease(d *dhcpv4.DHCPv4, l Lease) {
	d.YourIPAddr = l.YourIP.To4()
	secs := uint32(l.LeaseTime / time.Second)
	d.UpdateOption(dhcpv4.OptIPAddressLeaseTime(l.LeaseTime))
	d.UpdateOption(dhcpv4.OptRenewTimeValue(time.Duration(secs/2) * time.Second))
	d.UpdateOption(dhcpv4.OptRebindingTimeValue(time.Duration(uint64(secs)*7/8) * time.Second))
	d.UpdateOption(dhcpv4.OptSubnetMask(l.Mask))
	if len(l.Router) > 0 {
		d.UpdateOption(dhcpv4.OptRouter(l.Router...))
	}
	if len(l.DNS) > 0 {
		d.UpdateOption(dhcpv4.OptDNS(l.DNS...))
	}
}

// BuildOffer encodes a full-DHCP DHCPOFFER (isolated mode).
//
// Firmware fact: a full-DHCP offer must NOT carry option 60 "PXEClient".
// EDK2 then treats it as a PXE offer that lacks boot-server data, rejects it
// (PXE-E16 "no offer received") and waits for proxyDHCP on port 4011.
func BuildOffer(r Request, l Lease, b Boot) *dhcpv4.DHCPv4 {
	d := baseReply(r, dhcpv4.MessageTypeOffer, l.ServerIP)
	addLease(d, l)
	addBoot(d, b, l.ServerIP)
	return d
}

// BuildAck encodes a full-DHCP DHCPACK (isolated mode); see BuildOffer.
func BuildAck(r Request, l Lease, b Boot) *dhcpv4.DHCPv4 {
	d := baseReply(r, dhcpv4.MessageTypeAck, l.ServerIP)
	if r.CIAddr != nil {
		d.ClientIPAddr = r.CIAddr // RFC 2131 table 3: ciaddr from the REQUEST
	}
	addLease(d, l)
	addBoot(d, b, l.ServerIP)
	return d
}

// BuildNak encodes a DHCPNAK with a message (option 56) saying why.
func BuildNak(r Request, serverIP net.IP, msg string) *dhcpv4.DHCPv4 {
	d := baseReply(r, dhcpv4.MessageTypeNak, serverIP)
	// RFC 2131 §4.3.2: a NAK without a relay is always broadcast.
	if r.GIAddr == nil {
		d.SetBroadcast()
	} else if !r.Broadcast {
		d.SetBroadcast() // the relay must broadcast it to the client
	}
	if msg != "" {
		d.UpdateOption(dhcpv4.OptMessage(msg))
	}
	return d
}

// pxeVendorOptions is option 43 for proxy replies: PXE_DISCOVERY_CONTROL
// (sub-option 6) = 8, "use the boot file in this offer, no boot server
// discovery or menu", then End. Without option 43 older PXE ROMs ignore the
// proxy offer; with it, EDK2 classifies the offer as a BINL proxy offer and
// asks again on port 4011, which BuildProxyAck answers. iPXE reads the file
// name from the proxy offer directly.
var pxeVendorOptions = []byte{pxeDiscovery, 1, 8, 0xff}

// BuildProxyOffer encodes a proxyDHCP offer (proxy mode, port 67): no address,
// no lease options, option 60 echoing the client's kind (mandatory: it is how
// the firmware tells a proxy offer from a plain one), option 43, the boot file.
func BuildProxyOffer(r Request, serverIP net.IP, b Boot) *dhcpv4.DHCPv4 {
	d := baseReply(r, dhcpv4.MessageTypeOffer, serverIP)
	addProxy(d, b, serverIP)
	return d
}

// BuildProxyAck answers a DHCPREQUEST sent to port 4011 (PXE boot server
// discovery, the "BINL" step): same content as the proxy offer, as an ACK,
// addressed to the client's own address.
func BuildProxyAck(r Request, serverIP net.IP, b Boot) *dhcpv4.DHCPv4 {
	d := baseReply(r, dhcpv4.MessageTypeAck, serverIP)
	if r.CIAddr != nil {
		d.ClientIPAddr = r.CIAddr
	}
	addProxy(d, b, serverIP)
	return d
}

func addProxy(d *dhcpv4.DHCPv4, b Boot, serverIP net.IP) {
	addBoot(d, b, serverIP)
	if b.HTTPClient {
		return // option 60 HTTPClient set by addBoot; no PXE vendor options
	}
	d.UpdateOption(dhcpv4.OptClassIdentifier(vendorPXE))
	d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions))
}

// ReplyAddr is where a reply goes (RFC 2131 §4.1), for a request that
// arrived on port 67.
//   - relayed (giaddr set): to the relay agent, giaddr:67;
//   - NAK: broadcast;
//   - the client has an address (ciaddr): unicast to it, port 68;
//   - otherwise broadcast to 255.255.255.255:68. RFC 2131 lets a server
//     unicast to yiaddr when the broadcast bit is clear, but that needs an
//     ARP entry the client has not yet answered for; broadcasting is what
//     the RFC allows when unicast is not possible and every client accepts it.
func ReplyAddr(r Request, reply *dhcpv4.DHCPv4) *net.UDPAddr {
	switch {
	case r.GIAddr != nil:
		return &net.UDPAddr{IP: r.GIAddr, Port: dhcpv4.ServerPort}
	case reply.MessageType() == dhcpv4.MessageTypeNak:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	case r.CIAddr != nil:
		return &net.UDPAddr{IP: r.CIAddr, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}
