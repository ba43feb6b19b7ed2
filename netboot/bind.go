package netboot

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenConfig returns a net.ListenConfig whose sockets are bound to iface
// with SO_BINDTODEVICE (Linux), so that a server bound to the cart
// interface's address still answers nothing that arrives on another
// interface, even when that interface routes to the address. iface "" binds
// to no device.
func ListenConfig(iface string) net.ListenConfig {
	if iface == "" {
		return net.ListenConfig{}
	}
	return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.BindToDevice(int(fd), iface)
		}); err != nil {
			return err
		}
		return serr
	}}
}
