package dhcp

import (
	"regexp"
	"strings"
)

// pxeErrors explains the PXE ROM error codes a technician reads off a
// server's console, in the words the timeline uses.
var pxeErrors = map[string]string{
	"PXE-E11": "ARP timeout: the firmware got an address but could not reach the boot server. Check that Onramp's address is on the same network and no firewall sits between them.",
	"PXE-E16": "No valid offer received: DHCP answers came, but none the firmware accepts. Seen when a full DHCP offer also says PXEClient (UEFI firmware then waits for a proxyDHCP answer on port 4011), or when the firmware heard nothing at all. Onramp never sends that combination; check for a second DHCP server or a switch port that blocks DHCP.",
	"PXE-E18": "Server response timeout: the boot server stopped answering during discovery.",
	"PXE-E32": "TFTP open timeout: the firmware could not start downloading the boot file. Check that Onramp's TFTP service runs and nothing blocks UDP port 69.",
	"PXE-E3B": "TFTP error - file not found: the boot file named in the DHCP answer is not on Onramp's TFTP root.",
	"PXE-E51": "No DHCP or proxyDHCP offers were received: no DHCP server answered. Check the cable, the chosen interface, the switch port (spanning-tree portfast), and that Onramp is serving.",
	"PXE-E52": "proxyDHCP offers were received, no DHCP offers: Onramp answered in proxy mode but no site DHCP server gave an address. Use isolated mode if the network has no DHCP server.",
	"PXE-E53": "No boot filename received: an address came, but no boot file. The machine may not be approved, or its architecture is not one Onramp boots.",
	"PXE-E55": "proxyDHCP service did not reply to request on port 4011: a firewall may block UDP 4011 to Onramp.",
	"PXE-E61": "Media test failure, check cable: the network link is down.",
	"PXE-E78": "Could not locate boot server.",
	"PXE-E99": "Unexpected network error.",
}

var pxeCode = regexp.MustCompile(`(?i)PXE-[EM][0-9A-F]{2}`)

// Explain returns a plain-words explanation for a PXE error code found in
// msg ("PXE-E16: No valid offer received"), or "" when it holds none that
// is known.
func Explain(msg string) string {
	code := strings.ToUpper(pxeCode.FindString(msg))
	if code == "" {
		return ""
	}
	if s, ok := pxeErrors[code]; ok {
		return code + ": " + s
	}
	return ""
}
