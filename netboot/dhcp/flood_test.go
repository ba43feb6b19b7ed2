package dhcp

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"onramp/netboot"
)

// handlerServer is a Server with its pool set up, for calling handle
// directly (no sockets).
func handlerServer(t *testing.T, booter netboot.Booter, rec *netboot.Recorder) *Server {
	t.Helper()
	s, err := New(Config{Iface: "test0", ServerIP: net.IP{10, 77, 0, 1}, PoolStart: net.IP{10, 77, 0, 100}, PoolEnd: net.IP{10, 77, 0, 119},
		LeaseFile: filepath.Join(t.TempDir(), "leases"), Booter: booter, Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	st, err := openLeaseStore(s.cfg.LeaseFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s.pool = newPool(s.cfg.PoolStart, s.cfg.PoolEnd, s.cfg.ServerIP, st)
	return s
}

func discover(t *testing.T, mac net.HardwareAddr) []byte {
	t.Helper()
	p, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	if err != nil {
		t.Fatal(err)
	}
	return p.ToBytes()
}

// TestFloodUnapproved: a flood of DISCOVERs from random MACs with the
// allowlist on holds no address; an approved machine still gets one.
func TestFloodUnapproved(t *testing.T) {
	t.Parallel()
	approved := "02:00:00:00:00:01"
	booter := netboot.BooterFunc(func(ctx context.Context, m netboot.Machine) (netboot.Decision, error) {
		if m.MAC.String() != approved {
			return netboot.Decision{}, netboot.ErrNotApproved
		}
		return netboot.Decision{Kind: netboot.BootKernel}, nil
	})
	rec := &netboot.Recorder{}
	s := handlerServer(t, booter, rec)
	from := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	for i := range 2000 {
		mac := net.HardwareAddr{0x06, byte(i >> 16), byte(i >> 8), byte(i), 0x55, 0xaa}
		if reply, _ := s.handle(t.Context(), discover(t, mac), from, 67, nil); reply != nil {
			t.Fatalf("unapproved %s got a reply", mac)
		}
	}
	if n := len(s.pool.pending); n != 0 {
		t.Errorf("flood holds %d addresses", n)
	}
	mac, _ := net.ParseMAC(approved)
	reply, to := s.handle(t.Context(), discover(t, mac), from, 67, nil)
	if reply == nil || reply.MessageType() != dhcpv4.MessageTypeOffer || to.String() != "255.255.255.255:68" {
		t.Fatalf("approved machine: %v to %v", reply, to)
	}
	var ignored int
	for _, e := range rec.Events() {
		if e.Kind == netboot.EventDHCPIgnored && strings.Contains(e.Err, "allowlist") {
			ignored++
		}
	}
	if ignored != 2000 {
		t.Errorf("%d ignored events, want 2000", ignored)
	}
}

// TestPoolExhaustion: with 20 addresses, the 21st machine gets no offer and
// a plain-words event; a REQUEST for a taken address gets a NAK.
func TestPoolExhaustion(t *testing.T) {
	t.Parallel()
	rec := &netboot.Recorder{}
	s := handlerServer(t, testBooter(nil, nil), rec)
	from := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	var first net.IP
	for i := range 21 {
		mac := net.HardwareAddr{0x02, 0, 0, 0, 0x20, byte(i)}
		reply, _ := s.handle(t.Context(), discover(t, mac), from, 67, nil)
		if i < 20 {
			if reply == nil {
				t.Fatalf("machine %d got no offer", i)
			}
			if first == nil {
				first = reply.YourIPAddr
			}
			req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(reply.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)))
			if ack, _ := s.handle(t.Context(), req.ToBytes(), from, 67, nil); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("machine %d got no ACK: %v", i, ack)
			}
		} else if reply != nil {
			t.Fatalf("21st machine got %s from a 20-address pool", reply.YourIPAddr)
		}
	}
	evs := rec.Events()
	if last := evs[len(evs)-1]; last.Kind != netboot.EventDHCPIgnored || !strings.Contains(last.Err, "pool is full") {
		t.Errorf("last event %+v, want pool-full", last)
	}
	// Someone else asks for the first machine's address.
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0x21, 0}
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(first)))
	nak, to := s.handle(t.Context(), req.ToBytes(), from, 67, nil)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak || to.String() != "255.255.255.255:68" {
		t.Fatalf("request for a taken address: %v to %v", nak, to)
	}
	// Our own MAC is never answered (loop prevention).
	own := net.HardwareAddr{0x02, 0, 0, 0, 0x22, 0}
	if reply, _ := s.handle(t.Context(), discover(t, own), from, 67, own); reply != nil {
		t.Error("answered our own MAC")
	}
}
