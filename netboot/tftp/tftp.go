// Package tftp serves the iPXE binaries to PXE firmware over TFTP, read-only.
//
// Protocol: TFTP revision 2 (RFC 1350) with option negotiation (RFC 2347),
// blksize (RFC 2348), timeout and tsize (RFC 2349) and windowsize (RFC
// 7440, which OVMF/EDK2 and iPXE use). Only read requests in octet mode are
// served; write requests are refused with "access violation", netascii with
// an error (no firmware uses it for boot files).
//
// The data path is our own (it replaced github.com/pin/tftp, whose
// per-block overhead made it slower than tftpd-hpa): each transfer has one
// UDP socket bound to the address the request came to and connected to the
// client (the kernel drops packets from any other TID), one preallocated
// packet buffer, and reads the file with ReadAt in chunks of 64 KiB or
// more, so a block costs one send and one receive. While no more than
// threadTransfers transfers run, each uses a blocking socket on its own
// thread, woken by the kernel as tftpd-hpa's forked process is; beyond
// that, GOMAXPROCS loops serve the rest from epoll, several transfers per
// thread, so a rack that boots at once does not cost a thread per machine
// (see dgram and loop for the measurements behind that). A window of blocks is resent when no ACK comes within the
// timeout, at most Retries times in a row; duplicate ACKs are ignored (no
// Sorcerer's Apprentice). Concurrent transfers are capped in total
// (MaxTransfers) and per client IP (MaxPerClient), so one host cannot take
// every slot.
//
// Firmware quirks handled here:
//   - OVMF/EDK2 first sends a read request with tsize=0 to learn the size,
//     then aborts with an ERROR packet ("User aborted") once it has the OACK,
//     and starts the real download. That is reported as a size probe, not as
//     an error.
//   - Firmware asks for "/ipxe.efi" or "boot\ipxe.efi": see Sanitize.
//   - Some NIC/switch paths drop fragments, so blksize is capped at the
//     interface MTU minus IP/UDP/TFTP headers (1468 on Ethernet).
//   - Block numbers wrap from 65535 to 0 (files over 32 MiB at blksize 512),
//     as tftp-hpa, curl and iPXE expect.
//
// TFTP does not know the client's MAC; events carry the client IP and the
// orchestrator maps IP to MAC from the DHCP leases it handed out.
package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"onramp/netboot"
)

// DefaultBlockSize is the blksize cap used when the interface MTU is not
// known: 1500 (Ethernet) - 20 (IPv4) - 8 (UDP) - 4 (TFTP).
const DefaultBlockSize = 1468

// Config configures a Server.
type Config struct {
	// Addr is the UDP address to listen on, e.g. "10.77.0.1:69".
	Addr string
	// OnLink, when set, is the cart network: the kernel drops requests from
	// any other source address (netboot.OnLinkListenConfig), so a machine on
	// another network that routes to Addr gets no answer at all.
	OnLink *net.IPNet
	// Root holds the files served, usually BootFiles(...) or
	// (*os.Root).FS(). Do not use os.DirFS for a directory an untrusted
	// party can write to: it follows symlinks out of the directory; an
	// os.Root-based FS does not.
	Root fs.FS
	// Sink receives tftp.start / tftp.done / tftp.error events. nil = discard.
	Sink netboot.Sink
	// Logger; nil = discard. The server adds component=tftp.
	Logger *slog.Logger
	// MaxBlockSize caps the negotiated blksize (513..65464). 0 = the MTU of
	// the interface that holds Addr's IP minus 32, or DefaultBlockSize.
	MaxBlockSize int
	// Timeout is how long to wait for each ACK before resending (default 2s).
	Timeout time.Duration
	// Retries is how many times a block is sent before giving up (default 5).
	Retries int
	// MaxTransfers bounds concurrent transfers (default 512); requests
	// beyond it are refused at once with "server busy", so a flood of read
	// requests cannot pile up goroutines and sockets. A rack of 200
	// machines fetching iPXE at once stays well below it.
	MaxTransfers int
	// MaxPerClient bounds concurrent transfers from one client IP (default
	// MaxTransfers/8, at least min(8, MaxTransfers)): a firmware retrying
	// in a loop, or one host flooding read requests, cannot take every
	// slot.
	MaxPerClient int
	// MaxWindowSize caps the negotiated windowsize (RFC 7440; default 64).
	MaxWindowSize int
}

// threadTransfers is how many transfers at once get a thread each.
// Measured with make bench (curl clients in a second namespace, 2 cores):
// with ten 32 MiB downloads at once, threads for all of them ran at 1.02–
// 1.03 of tftpd-hpa; threads for only GOMAXPROCS and the rest on the
// netpoller 0.93, or on loops 0.91–0.97. Fifty 830 KiB downloads on
// threads: 1.03–1.08.
const threadTransfers = 128

// Server is a read-only TFTP server. Create it with New and start it with Run.
type Server struct {
	cfg    Config
	log    *slog.Logger
	sink   netboot.Sink
	ctx    context.Context // cancelled when Run returns; aborts transfers
	cancel context.CancelFunc
	wg     sync.WaitGroup // running transfers
	// blockingMax: up to this many running transfers, a new one gets a
	// blocking socket (dgram) on its own thread; beyond it, a loop.
	blockingMax int
	loops       []*loop // GOMAXPROCS of them while Run runs

	mu      sync.Mutex
	conn    *net.UDPConn
	running int                // transfers, guarded by mu
	onLoop  atomic.Int64       // transfers served on a loop, ever
	per     map[netip.Addr]int // transfers per client IP, guarded by mu
}

// New checks cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Root == nil {
		return nil, errors.New("create tftp server: no root file system")
	}
	if cfg.Addr == "" {
		return nil, errors.New("create tftp server: no listen address")
	}
	if cfg.MaxBlockSize != 0 && (cfg.MaxBlockSize <= 512 || cfg.MaxBlockSize > maxBlockSize) {
		return nil, fmt.Errorf("create tftp server: MaxBlockSize %d outside 513..65464", cfg.MaxBlockSize)
	}
	if cfg.MaxBlockSize == 0 {
		cfg.MaxBlockSize = blockSizeFor(cfg.Addr)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = 512
	}
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = max(cfg.MaxTransfers/8, min(cfg.MaxTransfers, 8))
	}
	if cfg.MaxWindowSize <= 0 {
		cfg.MaxWindowSize = 64
	}
	cfg.MaxWindowSize = min(cfg.MaxWindowSize, maxWindowSize)
	if _, err := netboot.OnLinkListenConfig(cfg.OnLink); err != nil {
		return nil, fmt.Errorf("create tftp server: %w", err)
	}
	s := &Server{cfg: cfg, sink: cfg.Sink, log: cfg.Logger, per: map[netip.Addr]int{}, blockingMax: threadTransfers}
	if s.sink == nil {
		s.sink = netboot.Discard
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "tftp")
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// blockSizeFor returns the MTU-derived blksize cap for the interface that
// holds addr's IP, or DefaultBlockSize.
func blockSizeFor(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return DefaultBlockSize
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return DefaultBlockSize
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return DefaultBlockSize
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				// 20 (IPv4) + 8 (UDP) + 4 (TFTP DATA header) = 32.
				if bs := ifc.MTU - 32; bs > 512 && bs <= 65464 {
					return bs
				}
				return DefaultBlockSize
			}
		}
	}
	return DefaultBlockSize
}

// MaxBlockSize reports the blksize cap in use.
func (s *Server) MaxBlockSize() int { return s.cfg.MaxBlockSize }

// Listen binds the UDP socket, so that bind errors surface before Run and
// tests can learn the port. Run calls it if it was not called.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return s.conn.LocalAddr(), nil
	}
	ua, err := net.ResolveUDPAddr("udp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("resolve tftp address %s: %w", s.cfg.Addr, err)
	}
	lc, err := netboot.OnLinkListenConfig(s.cfg.OnLink)
	if err != nil {
		return nil, fmt.Errorf("listen tftp on %s: %w", s.cfg.Addr, err)
	}
	pc, err := lc.ListenPacket(context.Background(), "udp", ua.String())
	if err != nil {
		return nil, fmt.Errorf("listen tftp on %s: %w", s.cfg.Addr, err)
	}
	conn := pc.(*net.UDPConn)
	// IP_PKTINFO tells which local address each request was sent to, so
	// the transfer answers from it even when Addr is 0.0.0.0. Turned on
	// before any packet can arrive.
	if err := enablePktInfo(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("enable packet info on %s: %w", s.cfg.Addr, err)
	}
	s.conn = conn
	return conn.LocalAddr(), nil
}

func enablePktInfo(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	v6 := conn.LocalAddr().(*net.UDPAddr).IP.To4() == nil
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Run serves until ctx is cancelled, then aborts running transfers and
// returns nil once every transfer goroutine has ended.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	s.log.Info("serving tftp", "addr", conn.LocalAddr().String(), "maxBlockSize", s.cfg.MaxBlockSize)
	if err := s.startLoops(); err != nil {
		conn.Close()
		return err
	}

	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err := s.serve(conn)
	stop()
	s.cancel() // aborts transfers: their sockets close
	conn.Close()
	s.wg.Wait()
	for _, l := range s.loops {
		l.stop()
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve tftp: %w", err)
	}
	return nil
}

func (s *Server) startLoops() error {
	for range max(1, runtime.GOMAXPROCS(0)) {
		l, err := newLoop()
		if err != nil {
			for _, l := range s.loops {
				l.stop()
			}
			return err
		}
		s.loops = append(s.loops, l)
		go l.serve()
	}
	return nil
}

// loop returns the least loaded loop.
func (s *Server) loop() *loop {
	best := s.loops[0]
	for _, l := range s.loops[1:] {
		if l.load.Load() < best.load.Load() {
			best = l
		}
	}
	return best
}

// serve reads requests from the well-known port until conn is closed.
func (s *Server) serve(conn *net.UDPConn) error {
	buf := make([]byte, 4096)
	oob := make([]byte, 256)
	var reply []byte
	for {
		n, oobn, flags, from, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// ICMP errors from earlier replies and the like: keep serving.
			s.log.Debug("read request", "err", err)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		pkt := buf[:n]
		if n < 2 {
			continue
		}
		switch op := binary.BigEndian.Uint16(pkt); op {
		case opRRQ, opWRQ:
		case opDATA, opACK, opERROR, opOACK:
			// Stray packets of a transfer that has ended, sent to port 69.
			continue
		default:
			reply = appendError(reply[:0], errIllegalOp, "illegal TFTP operation")
			conn.WriteToUDPAddrPort(reply, from)
			continue
		}
		if flags&unix.MSG_TRUNC != 0 {
			reply = appendError(reply[:0], errIllegalOp, "request too long")
			conn.WriteToUDPAddrPort(reply, from)
			continue
		}
		req, err := parseRequest(pkt)
		if err != nil {
			s.log.Debug("malformed request", "ip", from.Addr().String(), "err", err)
			reply = appendError(reply[:0], errIllegalOp, "malformed request")
			conn.WriteToUDPAddrPort(reply, from)
			continue
		}
		ip := from.Addr().String()
		if req.op == opWRQ {
			s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: printable(req.filename),
				Err: "a client tried to upload a file; Onramp's TFTP server is read-only and refused it"})
			s.log.Warn("write request refused", "ip", ip, "file", printable(req.filename))
			reply = appendError(reply[:0], errAccess, "access violation: this server is read-only")
			conn.WriteToUDPAddrPort(reply, from)
			continue
		}
		blocking, why := s.acquire(from.Addr())
		if why != "" {
			s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: printable(req.filename), Err: why})
			reply = appendError(reply[:0], errUndefined, "server busy")
			conn.WriteToUDPAddrPort(reply, from)
			continue
		}
		local := localAddr(oob[:oobn])
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.release(from.Addr())
			s.transfer(req, from, local, blocking)
		}()
	}
}

// acquire takes a transfer slot for ip, or says in words why not. blocking
// says whether the transfer should use a blocking socket on its own thread
// (few transfers running) or the netpoller (many): see dgram.
func (s *Server) acquire(ip netip.Addr) (blocking bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.running >= s.cfg.MaxTransfers:
		return false, fmt.Sprintf("Onramp is already sending %d files over TFTP; this request was turned away (the firmware retries)", s.cfg.MaxTransfers)
	case s.per[ip] >= s.cfg.MaxPerClient:
		return false, fmt.Sprintf("this machine already has %d TFTP downloads running; this request was turned away (the firmware retries)", s.cfg.MaxPerClient)
	}
	s.running++
	s.per[ip]++
	blocking = s.running <= s.blockingMax
	return blocking, ""
}

func (s *Server) release(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	if s.per[ip]--; s.per[ip] <= 0 {
		delete(s.per, ip)
	}
}

// localAddr is the destination address of a request, from its IP_PKTINFO
// (or IPV6_PKTINFO) control message; invalid when there is none.
func localAddr(oob []byte) netip.Addr {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			var a [4]byte
			copy(a[:], m.Data[8:12]) // ipi_addr: the header's destination
			if ip := netip.AddrFrom4(a); !ip.IsMulticast() && ip != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				return ip
			}
			copy(a[:], m.Data[4:8]) // ipi_spec_dst: the local address
			return netip.AddrFrom4(a)
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= 16:
			var a [16]byte
			copy(a[:], m.Data[:16])
			return netip.AddrFrom16(a).Unmap()
		}
	}
	return netip.Addr{}
}

// transfer serves one read request from its own socket.
func (s *Server) transfer(req request, client netip.AddrPort, local netip.Addr, blocking bool) {
	start := time.Now()
	var err error
	ip := client.Addr().String()
	if !local.IsValid() {
		if a, ok := s.conn.LocalAddr().(*net.UDPAddr); ok && !a.IP.IsUnspecified() {
			local, _ = netip.AddrFromSlice(a.IP)
			local = local.Unmap()
		}
	}
	timeout := s.cfg.Timeout
	if v, ok := req.option("timeout"); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 255 {
			timeout = time.Duration(n) * time.Second
		}
	}
	conn, err := dialDgram(local, client, timeout)
	if err != nil {
		s.log.Warn("open transfer socket", "ip", ip, "err", err)
		return
	}
	defer conn.close()
	stop := context.AfterFunc(s.ctx, conn.shutdown)
	defer stop()
	t := &xfer{conn: conn, retries: s.cfg.Retries, timeout: timeout}
	fail := func(code uint16, msg string) {
		t.pkt = appendError(t.pkt[:0], code, msg)
		conn.write(t.pkt)
	}

	if req.mode != "octet" {
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: printable(req.filename),
			Err: "the client asked for " + printable(req.mode) + " mode; Onramp serves boot files in octet (binary) mode only"})
		fail(errIllegalOp, "only octet mode is supported")
		return
	}
	name, err := Sanitize(req.filename)
	if err != nil {
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: printable(req.filename),
			Err: "the client asked for a file name Onramp refuses (" + err.Error() + "); nothing was sent"})
		s.log.Warn("refused file name", "ip", ip, "file", printable(req.filename), "err", err)
		fail(errAccess, "access violation")
		return
	}
	f, err := s.cfg.Root.Open(name)
	if err != nil {
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: name,
			Err: "the client asked for " + name + ", which Onramp does not have; check the boot files (iPXE binaries)"})
		s.log.Warn("file not found", "ip", ip, "file", name, "err", err)
		fail(errNotFound, "file not found")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: name,
			Err: "the client asked for " + name + ", which is not a regular file"})
		fail(errNotFound, "file not found")
		return
	}
	size := st.Size()
	ra, ok := f.(io.ReaderAt)
	if !ok {
		ra = &sequentialReaderAt{r: f}
	}
	s.emit(netboot.Event{Kind: netboot.EventTFTPStart, IP: ip, File: name, Bytes: size})
	s.log.Debug("transfer start", "ip", ip, "file", name, "size", size)

	neg := negotiate(req, size, s.cfg.MaxBlockSize, s.cfg.MaxWindowSize)
	t.init(ra, size, neg.blksize, neg.windowsize)
	var sent int64
	if blocking {
		if len(neg.oack) > 0 {
			err = t.sendOACK(neg.oack)
		}
		if err == nil {
			sent, err = t.send()
		}
	} else {
		var oack []byte
		if len(neg.oack) > 0 {
			oack = appendOACK(nil, neg.oack)
		}
		s.onLoop.Add(1)
		err = s.loop().run(t, conn, oack)
		sent = t.ackedBytes()
	}
	dur := time.Since(start)
	var pe *peerError
	switch {
	case err == nil:
		s.emit(netboot.Event{Kind: netboot.EventTFTPDone, IP: ip, File: name, Bytes: sent, Duration: dur})
		s.log.Info("transfer done", "ip", ip, "file", name, "bytes", sent, "duration", dur, "blksize", neg.blksize, "windowsize", neg.windowsize)
	case errors.As(err, &pe) && t.acked == 0 && len(neg.oack) > 0:
		s.emit(netboot.Event{Kind: netboot.EventTFTPDone, IP: ip, File: name, Duration: dur,
			Detail: "size probe: the firmware asked only for the file size and stopped, as UEFI firmware does before the real download"})
		s.log.Debug("size probe", "ip", ip, "file", name)
	default:
		if s.ctx.Err() != nil {
			err = fmt.Errorf("send %s: %w", name, context.Canceled)
		}
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: name, Bytes: sent, Duration: dur, Err: explain(err, sent, size)})
		s.log.Warn("transfer failed", "ip", ip, "file", name, "bytes", sent, "duration", dur, "err", err)
		switch {
		case pe != nil, s.ctx.Err() != nil:
		case errors.Is(err, errTimeout):
			fail(errUndefined, "timeout")
		default:
			fail(errUndefined, "read error")
		}
	}
}

func explain(err error, sent, size int64) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Sprintf("Onramp is shutting down; the transfer was stopped after %d of %d bytes", sent, size)
	case errors.Is(err, errTimeout), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("the machine stopped acknowledging after %d of %d bytes (timeout): it may have rebooted, "+
			"or large blocks are dropped on the way (try a smaller MTU/blksize)", sent, size)
	case errors.As(err, new(*peerError)):
		return fmt.Sprintf("the machine aborted the transfer after %d of %d bytes (%s)", sent, size, printable(err.Error()))
	default:
		return fmt.Sprintf("the transfer failed after %d of %d bytes: %s", sent, size, printable(err.Error()))
	}
}

func (s *Server) emit(e netboot.Event) {
	e.Time = time.Now()
	s.sink.Emit(e)
}

// printable makes an untrusted name safe for logs and events.
func printable(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}
