package events

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestNeighbourTable(t *testing.T) {
	t.Parallel()
	const arp = `IP address       HW type     Flags       HW address            Mask     Device
10.77.0.20       0x1         0x2         52:54:00:77:00:10     *        br0
10.77.0.21       0x1         0x0         00:00:00:00:00:00     *        br0
10.77.0.22       0x1         0x2         52:54:00:77:00:12     *        eth9
`
	path := filepath.Join(t.TempDir(), "arp")
	if err := os.WriteFile(path, []byte(arp), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip, iface, want string
		ok              bool
	}{
		{"10.77.0.20", "", "52:54:00:77:00:10", true},
		{"10.77.0.20", "br0", "52:54:00:77:00:10", true},
		{"::ffff:10.77.0.20", "br0", "52:54:00:77:00:10", true},
		{"10.77.0.21", "", "", false}, // incomplete
		{"10.77.0.22", "br0", "", false},
		{"10.77.0.22", "eth9", "52:54:00:77:00:12", true},
		{"10.77.0.99", "", "", false},
	}
	for _, tt := range tests {
		mac, ok := NeighbourTable{Path: path, Iface: tt.iface}.MACForIP(netip.MustParseAddr(tt.ip))
		if mac != tt.want || ok != tt.ok {
			t.Errorf("MACForIP(%s, %q) = %q, %v; want %q, %v", tt.ip, tt.iface, mac, ok, tt.want, tt.ok)
		}
	}
	if _, ok := (NeighbourTable{Path: filepath.Join(t.TempDir(), "none")}).MACForIP(netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("missing table resolved something")
	}
	first := ResolverFunc(func(netip.Addr) (string, bool) { return "", false })
	rs := Resolvers{nil, first, NeighbourTable{Path: path}}
	if mac, ok := rs.MACForIP(netip.MustParseAddr("10.77.0.20")); !ok || mac != "52:54:00:77:00:10" {
		t.Errorf("Resolvers = %q, %v", mac, ok)
	}
}
