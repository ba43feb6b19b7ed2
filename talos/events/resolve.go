package events

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Resolver finds the MAC address of an on-link peer by its IP address.
type Resolver interface {
	MACForIP(ip netip.Addr) (mac string, ok bool)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(netip.Addr) (string, bool)

// MACForIP calls f.
func (f ResolverFunc) MACForIP(ip netip.Addr) (string, bool) { return f(ip) }

// Resolvers asks each resolver in turn; the first answer wins.
type Resolvers []Resolver

// MACForIP implements Resolver.
func (rs Resolvers) MACForIP(ip netip.Addr) (string, bool) {
	for _, r := range rs {
		if r == nil {
			continue
		}
		if mac, ok := r.MACForIP(ip); ok {
			return mac, true
		}
	}
	return "", false
}

// NeighbourTable resolves from the kernel's IPv4 neighbour (ARP) table, as
// /proc/net/arp shows it. A peer that just talked to us over TCP or UDP on
// the cart network is in it: the kernel resolved its address to answer.
// Iface, when set, restricts the lookup to that interface.
type NeighbourTable struct {
	Path  string // default /proc/net/arp
	Iface string
}

// MACForIP implements Resolver.
func (n NeighbourTable) MACForIP(ip netip.Addr) (string, bool) {
	path := n.Path
	if path == "" {
		path = "/proc/net/arp"
	}
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	return lookupARP(bufio.NewScanner(f), ip.Unmap(), n.Iface)
}

// lookupARP reads /proc/net/arp lines:
// "IP address  HW type  Flags  HW address  Mask  Device".
func lookupARP(sc *bufio.Scanner, ip netip.Addr, iface string) (string, bool) {
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[0] != ip.String() {
			continue
		}
		if iface != "" && f[5] != iface {
			continue
		}
		if f[2] == "0x0" { // incomplete entry
			continue
		}
		hw, err := net.ParseMAC(f[3])
		if err != nil || len(hw) != 6 || hw.String() == "00:00:00:00:00:00" {
			continue
		}
		return hw.String(), true
	}
	return "", false
}
