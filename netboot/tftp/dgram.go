package tftp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dgram is a transfer's UDP socket: bound to the server's address,
// connected to the client, and blocking, with SO_RCVTIMEO as the ACK
// timeout.
//
// Why not a *net.UDPConn: TFTP is lock-step, one round trip per block (or
// per window), so the time from "ACK arrives" to "next DATA leaves" is the
// throughput. Through Go's netpoller that path is read (EAGAIN), park,
// epoll_wait, wake-up on maybe another thread, read again. A blocking recv
// on the transfer's own thread is woken by the kernel directly, as
// tftpd-hpa's forked process is. Measured on a 2-core machine (perf stat
// task-clock, curl, 32 MiB at blksize 1468 over loopback): one transfer at
// a time costs 12.8 µs of server CPU per block blocking, 16.6 µs polled,
// 11.5 µs for tftpd-hpa; ten at once, 10.4 µs blocking, 9.8 µs polled,
// 11.5 µs tftpd-hpa. So transfers block a thread each only while no more
// than GOMAXPROCS run (Server.blockingMax); beyond that all are polled.
type dgram struct {
	fd     int
	closed atomic.Bool // shutdown or close was called

	mu       sync.Mutex // orders shutdown against close, so fd is never reused under it
	released bool
}

// dialDgram opens the socket from local (invalid = any) to remote. It needs
// no on-link filter: a connected UDP socket only receives from its peer,
// whose request already passed the listening socket's filter.
func dialDgram(local netip.Addr, remote netip.AddrPort, timeout time.Duration) (*dgram, error) {
	family := unix.AF_INET
	if !remote.Addr().Is4() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("open transfer socket: %w", err)
	}
	fail := func(what string, err error) (*dgram, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s transfer socket: %w", what, err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("set timeout on", err)
	}
	if local.IsValid() && local.Is4() == remote.Addr().Is4() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(local, 0))); err != nil {
			return fail("bind", err)
		}
	}
	if err := unix.Connect(fd, sockaddr(remote)); err != nil {
		return fail("connect", err)
	}
	return &dgram{fd: fd}, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// setTimeout changes the receive timeout (the client's RFC 2349 timeout).
func (d *dgram) setTimeout(timeout time.Duration) error {
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	return unix.SetsockoptTimeval(d.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
}

func (d *dgram) write(p []byte) error {
	for {
		_, err := unix.Write(d.fd, p)
		switch {
		case err == nil:
			return nil
		case err == unix.EINTR:
			continue
		case err == unix.ECONNREFUSED:
			// An ICMP error from an earlier packet; the ACK timeout and
			// retry count decide whether the client is gone.
			return nil
		case d.closed.Load():
			return net.ErrClosed
		}
		return err
	}
}

// read returns one datagram; errTimeout after the receive timeout,
// net.ErrClosed once shutdown was called.
func (d *dgram) read(p []byte) (int, error) {
	for {
		n, err := unix.Read(d.fd, p)
		switch {
		case d.closed.Load():
			return 0, net.ErrClosed
		case err == nil:
			return n, nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errTimeout
		}
		return 0, err
	}
}

// shutdown wakes a blocked read (it returns net.ErrClosed); safe to call
// from another goroutine. close must still be called by the owner.
func (d *dgram) shutdown() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed.Store(true)
	if !d.released {
		unix.Shutdown(d.fd, unix.SHUT_RDWR)
	}
}

func (d *dgram) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed.Store(true)
	if d.released {
		return nil
	}
	d.released = true
	return unix.Close(d.fd)
}

// transferConn is a transfer's socket: a blocking dgram, or a polledConn
// through Go's netpoller.
type transferConn interface {
	// write sends one datagram; ICMP errors from earlier packets are not
	// errors.
	write(p []byte) error
	// read returns one datagram, errTimeout after the timeout, or
	// net.ErrClosed after shutdown.
	read(p []byte) (int, error)
	// shutdown wakes a blocked read; safe from another goroutine.
	shutdown()
	close() error
}

// polledConn is a connected *net.UDPConn. With more transfers running than
// GOMAXPROCS, a thread blocked per transfer costs more than it saves: the
// threads queue for the Ps on every wake-up. Then the netpoller, which
// multiplexes them on few threads, is faster.
type polledConn struct {
	c       *net.UDPConn
	timeout time.Duration
}

func dialPolled(local netip.Addr, remote netip.AddrPort, timeout time.Duration) (*polledConn, error) {
	var laddr *net.UDPAddr
	if local.IsValid() && local.Is4() == remote.Addr().Is4() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	c, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(remote))
	if err != nil {
		return nil, fmt.Errorf("open transfer socket: %w", err)
	}
	return &polledConn{c: c, timeout: timeout}, nil
}

func (p *polledConn) write(b []byte) error {
	_, err := p.c.Write(b)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return err
}

func (p *polledConn) read(b []byte) (int, error) {
	if err := p.c.SetReadDeadline(time.Now().Add(p.timeout)); err != nil {
		return 0, err
	}
	n, err := p.c.Read(b)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return 0, errTimeout
	}
	return n, err
}

func (p *polledConn) shutdown()    { p.c.Close() }
func (p *polledConn) close() error { return p.c.Close() }

// movingConn starts a transfer on a blocking dgram and moves it to the
// netpoller, for good, as soon as more transfers run than have a thread
// each (crowded). Machines that power on together ask within milliseconds
// of each other: the first GOMAXPROCS would otherwise keep their threads
// for the whole download while the rest queue behind them for the Ps.
// Measured on a 2-core machine (ten curl clients at once, 32 MiB at
// blksize 1468 over a veth): two transfers blocking and eight polled
// took 3.53 s, all ten polled 3.30 s, moving 3.05 s, tftpd-hpa 2.9–3.15 s.
type movingConn struct {
	crowded func() bool
	moved   func() // called after a move
	timeout time.Duration

	mu   sync.Mutex // guards cur against shutdown; only the owner changes it
	cur  transferConn
	d    *dgram // nil once moved
	shut bool
}

func newMovingConn(d *dgram, timeout time.Duration, crowded func() bool, moved func()) *movingConn {
	return &movingConn{crowded: crowded, moved: moved, timeout: timeout, cur: d, d: d}
}

func (m *movingConn) write(p []byte) error { return m.cur.write(p) }

func (m *movingConn) read(p []byte) (int, error) {
	if m.d != nil && m.crowded() {
		m.move()
	}
	return m.cur.read(p)
}

// move hands the dgram's socket (connected, same port: the client sees no
// change) to a *net.UDPConn on the netpoller. If that fails the transfer
// stays blocking.
func (m *movingConn) move() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shut {
		return
	}
	f := os.NewFile(uintptr(m.d.fd), "tftp transfer")
	pc, err := net.FilePacketConn(f) // dups the descriptor
	if err != nil {
		m.d = nil // do not try again on every block
		return
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		m.d = nil
		return
	}
	// f closes the dgram's descriptor (the UDPConn holds the dup); the
	// dgram must not close or shut down that number again.
	m.d.mu.Lock()
	m.d.released = true
	m.d.mu.Unlock()
	f.Close()
	m.cur = &polledConn{c: uc, timeout: m.timeout}
	m.d = nil
	if m.moved != nil {
		m.moved()
	}
}

func (m *movingConn) shutdown() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.shut = true
	m.cur.shutdown()
}

func (m *movingConn) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.shut = true
	return m.cur.close()
}
