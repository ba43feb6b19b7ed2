package dhcp

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// listenUDP opens a UDP socket on 0.0.0.0:port bound to iface with
// SO_BINDTODEVICE, so that it sees the interface's broadcasts and nothing
// from any other interface, and can send broadcasts out of that interface
// only. With reuse, SO_REUSEADDR lets a probe share port 68 with a DHCP
// client on the same interface. Servers pass reuse=false: a second DHCP
// server on the same interface and port then fails with "address already in
// use" instead of silently sharing the broadcasts.
func listenUDP(iface string, port int, reuse bool) (*net.UDPConn, error) {
	if iface == "" {
		return nil, errors.New("listen udp: no interface chosen")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("open udp socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("udp-%s-%d", iface, port))
	defer f.Close() // net.FilePacketConn dups the descriptor
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
		return nil, fmt.Errorf("set SO_BROADCAST: %w", err)
	}
	if reuse {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return nil, fmt.Errorf("set SO_REUSEADDR: %w", err)
		}
	}
	if err := unix.BindToDevice(fd, iface); err != nil {
		return nil, fmt.Errorf("bind socket to interface %s: %w", iface, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		return nil, fmt.Errorf("bind udp port %d on %s: %w", port, iface, err)
	}
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrap udp socket: %w", err)
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, errors.New("wrap udp socket: not a UDP socket")
	}
	return uc, nil
}
