package app

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Network lists the host's interfaces so the technician can pick the one
// cabled to the cart switch. It never changes any interface.
type Network struct {
	sysfs string // "/sys/class/net", swappable in tests
	route string // "/proc/net/route"
	// labNetNS is the virtual lab's namespace (app.Config.LabNetNS);
	// "" = LabNamespace.
	labNetNS string
}

// NewNetwork returns the Network service reading the live system.
func NewNetwork() *Network {
	return &Network{sysfs: "/sys/class/net", route: "/proc/net/route"}
}

// Interface is one NIC as the UI shows it.
type Interface struct {
	Name     string   `json:"name"`
	MAC      string   `json:"mac"`
	Addrs    []string `json:"addrs"`
	Up       bool     `json:"up"`
	Carrier  bool     `json:"carrier"`
	MTU      int      `json:"mtu"`
	Wireless bool     `json:"wireless"`
	Loopback bool     `json:"loopback"`
	Virtual  bool     `json:"virtual"`
	// DefaultRoute is true when the host's default route leaves through it:
	// likely the site's network, not the cart switch.
	DefaultRoute bool   `json:"defaultRoute"`
	CartHint     bool   `json:"cartHint"`
	Hint         string `json:"hint"`
	// Lab is true for the virtual lab's network, which is not a host NIC.
	Lab bool `json:"lab"`
}

// Interfaces lists the host's network interfaces, cart-switch candidates first.
func (n *Network) Interfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	defIfs := n.defaultRouteIfaces()
	out := make([]Interface, 0, len(ifs))
	for _, nic := range ifs {
		it := Interface{
			Name:     nic.Name,
			MAC:      nic.HardwareAddr.String(),
			Up:       nic.Flags&net.FlagUp != 0,
			MTU:      nic.MTU,
			Loopback: nic.Flags&net.FlagLoopback != 0,
			Addrs:    []string{},
		}
		if addrs, err := nic.Addrs(); err == nil {
			for _, a := range addrs {
				it.Addrs = append(it.Addrs, a.String())
			}
		}
		base := filepath.Join(n.sysfs, nic.Name)
		if _, err := os.Stat(filepath.Join(base, "wireless")); err == nil {
			it.Wireless = true
		}
		if _, err := os.Stat(filepath.Join(base, "device")); err != nil {
			it.Virtual = true // no backing device: bridge, veth, tun, loopback...
		}
		if b, err := os.ReadFile(filepath.Join(base, "carrier")); err == nil {
			it.Carrier = strings.TrimSpace(string(b)) == "1"
		}
		it.DefaultRoute = defIfs[nic.Name]
		it.CartHint, it.Hint = cartHint(it)
		out = append(out, it)
	}
	labNS := n.labNetNS
	if labNS == "" {
		labNS = LabNamespace
	}
	if _, err := os.Stat(filepath.Join("/run/netns", labNS)); err == nil {
		out = append(out, Interface{
			Name: LabIface, Addrs: []string{"10.77.0.1/24"}, Up: true, Carrier: true, Virtual: true, Lab: true,
			CartHint: true, Hint: "the virtual lab: QEMU machines on a private network (onramp lab up)",
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].CartHint != out[j].CartHint {
			return out[i].CartHint
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// cartHint says, in plain words, whether an interface looks like the cable
// to the cart switch: wired, physical, link up, and not the way to the
// site's network (no default route).
func cartHint(it Interface) (bool, string) {
	switch {
	case it.Loopback:
		return false, "loopback: only this computer"
	case it.Wireless:
		return false, "wireless: never used for network boot"
	case it.Virtual:
		return false, "virtual interface (bridge, VPN or container)"
	case !it.Up || !it.Carrier:
		return false, "wired, but no link: check the cable to the cart switch"
	case it.DefaultRoute:
		return false, "wired, link up, carries the default route: probably the site network"
	default:
		return true, "wired, link up, no default route: looks like the cart switch"
	}
}

// defaultRouteIfaces reads /proc/net/route for interfaces holding a default route.
func (n *Network) defaultRouteIfaces() map[string]bool {
	out := map[string]bool{}
	f, err := os.Open(n.route)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[1] == "00000000" && fields[0] != "Iface" {
			out[fields[0]] = true
		}
	}
	return out
}
