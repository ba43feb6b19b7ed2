package dhcp

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	b := testBooter(nil, nil)
	s, err := New(Config{Iface: "x", ServerIP: net.ParseIP("10.77.0.1"), LeaseFile: "l", Booter: b})
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.Subnet.String() != "10.77.0.0/24" || c.PoolStart.String() != "10.77.0.100" || c.PoolEnd.String() != "10.77.0.254" ||
		c.LeaseTime != time.Hour || c.HTTPPort != 8080 || c.Workers != 8 || c.Sink == nil || c.Logger == nil {
		t.Errorf("defaults: subnet %v pool %v-%v lease %v http %d workers %d", c.Subnet, c.PoolStart, c.PoolEnd, c.LeaseTime, c.HTTPPort, c.Workers)
	}
	_, other, _ := net.ParseCIDR("10.78.0.0/24")
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no iface", Config{ServerIP: net.ParseIP("10.77.0.1"), LeaseFile: "l", Booter: b}, "no interface"},
		{"no booter", Config{Iface: "x", ServerIP: net.ParseIP("10.77.0.1"), LeaseFile: "l"}, "no Booter"},
		{"ipv6 server", Config{Iface: "x", ServerIP: net.ParseIP("fd77::1"), LeaseFile: "l", Booter: b}, "not IPv4"},
		{"no lease file", Config{Iface: "x", ServerIP: net.ParseIP("10.77.0.1"), Booter: b}, "lease file"},
		{"server outside subnet", Config{Iface: "x", ServerIP: net.ParseIP("10.77.0.1"), Subnet: other, LeaseFile: "l", Booter: b}, "outside subnet"},
		{"pool outside subnet", Config{Iface: "x", ServerIP: net.ParseIP("10.77.0.1"), PoolStart: net.ParseIP("10.77.1.1"), LeaseFile: "l", Booter: b}, "not inside subnet"},
	}
	for _, c := range cases {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	// Proxy mode needs no lease file or pool.
	if _, err := New(Config{Iface: "x", Mode: Proxy, ServerIP: net.ParseIP("192.168.1.5"), Booter: b}); err != nil {
		t.Errorf("proxy: %v", err)
	}
}
