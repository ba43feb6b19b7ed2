package netboot

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// OnLinkListenConfig returns a net.ListenConfig whose sockets drop, in the
// kernel, every packet whose IPv4 source is outside onLink (a classic BPF
// socket filter, SO_ATTACH_FILTER). A TCP listener so filtered never answers
// a SYN from elsewhere, a UDP socket never sees the datagram: a machine on
// another network that routes to Onramp's address gets nothing at all.
//
// SO_BINDTODEVICE would say "this interface only" more directly, but bound
// TCP and TFTP sockets lost clients behind a Linux bridge (the virtual lab's
// cart switch): requests arrived, follow-ups did not. DHCP keeps
// SO_BINDTODEVICE (netboot/dhcp), where it is needed to see broadcasts.
// onLink nil filters nothing.
func OnLinkListenConfig(onLink *net.IPNet) (net.ListenConfig, error) {
	if onLink == nil {
		return net.ListenConfig{}, nil
	}
	prog, err := onLinkFilter(onLink)
	if err != nil {
		return net.ListenConfig{}, err
	}
	return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, prog)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("attach on-link filter: %w", serr)
		}
		return nil
	}}, nil
}

// skfNetOff is SKF_NET_OFF (linux/filter.h): offsets from the network header.
const skfNetOff = -0x100000

func onLinkFilter(onLink *net.IPNet) (*unix.SockFprog, error) {
	ip4, mask := onLink.IP.To4(), onLink.Mask
	if ip4 == nil || len(mask) != net.IPv4len {
		return nil, fmt.Errorf("on-link filter: %s is not an IPv4 network", onLink)
	}
	m := uint32(mask[0])<<24 | uint32(mask[1])<<16 | uint32(mask[2])<<8 | uint32(mask[3])
	n := (uint32(ip4[0])<<24 | uint32(ip4[1])<<16 | uint32(ip4[2])<<8 | uint32(ip4[3])) & m
	off := int32(skfNetOff)
	netOff := uint32(off)
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: netOff + 12, Size: 4}, // IPv4 source address
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: m},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: n, SkipTrue: 1},
		bpf.RetConstant{Val: 0},          // elsewhere: drop
		bpf.RetConstant{Val: 0xffffffff}, // on-link: keep all of it
	})
	if err != nil {
		return nil, fmt.Errorf("on-link filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}, nil
}
