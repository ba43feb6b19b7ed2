package netns

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Advertiser sends IPv6 router advertisements (RFC 4861 section 4.2) on the
// lab bridge. It is not a router: router lifetime is 0, so nobody takes it as
// a default route. Its only job is to end iPXE's and the guests' wait for
// IPv6 autoconfiguration (iPXE otherwise waits ~13 s per boot stage). The
// advertised prefix carries the on-link and autonomous flags (RFC 4862 SLAAC).
type Advertiser struct {
	NetNS    string       // namespace holding Iface
	Iface    string       // bridge to advertise on
	Prefix   netip.Prefix // advertised /64, e.g. fd77::/64
	Interval time.Duration
	Log      *slog.Logger
}

// Run sends an advertisement at once and then every Interval (default 2 s)
// until ctx is done. The raw ICMPv6 socket is created inside the namespace.
func (a *Advertiser) Run(ctx context.Context) error {
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "lab-ra", "iface", a.Iface)
	interval := a.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	var fd, ifindex int
	err := Do(a.NetNS, func() error {
		ifi, err := net.InterfaceByName(a.Iface)
		if err != nil {
			return fmt.Errorf("find %s: %w", a.Iface, err)
		}
		ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		if err != nil {
			return fmt.Errorf("open icmpv6 socket: %w", err)
		}
		// RFC 4861 section 6.1.2: hosts drop RAs whose hop limit is not 255.
		for _, o := range []int{unix.IPV6_MULTICAST_HOPS, unix.IPV6_UNICAST_HOPS} {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, o, 255); err != nil {
				unix.Close(fd)
				return fmt.Errorf("set hop limit: %w", err)
			}
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex); err != nil {
			unix.Close(fd)
			return fmt.Errorf("set multicast interface: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("start router advertisements on %s: %w", a.Iface, err)
	}
	defer unix.Close(fd)

	msg := RouterAdvertisement(a.Prefix)
	dst := &unix.SockaddrInet6{Addr: [16]byte{0xff, 0x02, 15: 0x01}, ZoneId: uint32(ifindex)}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := unix.Sendto(fd, msg, 0, dst); err != nil {
			// The bridge has no carrier until a tap is up; keep trying.
			log.Debug("send router advertisement", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RouterAdvertisement encodes an RA with one prefix information option. The
// checksum is left zero: the kernel fills it in for raw ICMPv6 sockets
// (RFC 3542 section 3.1).
func RouterAdvertisement(prefix netip.Prefix) []byte {
	b := make([]byte, 16, 16+32)
	b[0] = 134 // type: router advertisement
	b[4] = 64  // current hop limit
	// b[5] flags M=0 O=0; b[6:8] router lifetime 0; reachable, retrans 0.
	if prefix.IsValid() && prefix.Addr().Is6() {
		p := make([]byte, 32)
		p[0], p[1] = 3, 4 // prefix information, length 4*8 bytes
		p[2] = byte(prefix.Bits())
		p[3] = 0xc0 // L (on-link) | A (autonomous)
		binary.BigEndian.PutUint32(p[4:], 3600)
		binary.BigEndian.PutUint32(p[8:], 1800)
		a := prefix.Masked().Addr().As16()
		copy(p[16:], a[:])
		b = append(b, p...)
	}
	return b
}
