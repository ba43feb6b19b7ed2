// Package tftp serves the iPXE binaries to PXE firmware over TFTP, read-only.
//
// Protocol: TFTP revision 2 (RFC 1350) with option negotiation (RFC 2347),
// blksize (RFC 2348) and tsize (RFC 2349); the transport is
// github.com/pin/tftp/v3. PXE firmware fetches a boot file of about 100 KiB
// (undionly.kpxe) to 1 MiB (ipxe.efi) and then switches to HTTP, so TFTP
// only has to be robust, not fast. Not supported on purpose: write requests
// (refused), RFC 7440 windowsize, pin/tftp's "anticipate" and single-port
// modes (both misbehave with real firmware and are slower here).
//
// Firmware quirks handled here:
//   - OVMF/EDK2 first sends a read request with tsize=0 to learn the size,
//     then aborts with an ERROR packet ("User aborted") once it has the OACK,
//     and starts the real download. That is reported as a size probe, not as
//     an error.
//   - Firmware asks for "/ipxe.efi" or "boot\ipxe.efi": see Sanitize.
//   - Some NIC/switch paths drop fragments, so blksize is capped at the
//     interface MTU minus IP/UDP/TFTP headers (1468 on Ethernet).
//
// TFTP does not know the client's MAC; events carry the client IP and the
// orchestrator maps IP to MAC from the DHCP leases it handed out.
package tftp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	ptftp "github.com/pin/tftp/v3"
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
}

// Server is a read-only TFTP server. Create it with New and start it with Run.
type Server struct {
	cfg    Config
	log    *slog.Logger
	sink   netboot.Sink
	srv    *ptftp.Server
	ctx    context.Context // cancelled when Run returns; aborts transfers
	cancel context.CancelFunc
	slots  chan struct{} // one per running transfer

	mu   sync.Mutex
	conn *net.UDPConn
}

// New checks cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Root == nil {
		return nil, errors.New("create tftp server: no root file system")
	}
	if cfg.Addr == "" {
		return nil, errors.New("create tftp server: no listen address")
	}
	if cfg.MaxBlockSize != 0 && (cfg.MaxBlockSize <= 512 || cfg.MaxBlockSize > 65464) {
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
	s := &Server{cfg: cfg, sink: cfg.Sink, log: cfg.Logger, slots: make(chan struct{}, cfg.MaxTransfers)}
	if s.sink == nil {
		s.sink = netboot.Discard
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "tftp")
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = ptftp.NewServer(s.read, s.write)
	s.srv.SetBlockSize(cfg.MaxBlockSize)
	s.srv.SetTimeout(cfg.Timeout)
	s.srv.SetRetries(cfg.Retries)
	// pin/tftp sleeps a random 0..1 s before each resend by default, on top
	// of the timeout; on a LAN that only slows recovery down.
	s.srv.SetBackoff(func(int) time.Duration { return 0 })
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
	// pin/tftp turns on IP_PKTINFO when Serve starts, to learn the local
	// address and the interface MTU of each request. A request queued before
	// that carries no such information and would be capped at blksize 512,
	// so turn it on here, before any packet can arrive.
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

	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(conn) }()
	var err error
	select {
	case <-ctx.Done():
		s.cancel() // abort transfers at their next block
		s.srv.Shutdown()
		err = <-served
	case err = <-served:
		s.cancel()
		s.srv.Shutdown()
	}
	conn.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve tftp: %w", err)
	}
	return nil
}

// write refuses every write request. pin/tftp sends the message in an ERROR
// packet (with error code 1; it has no way to choose code 2).
func (s *Server) write(filename string, wt io.WriterTo) error {
	ip := remoteIP(wt)
	s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: printable(filename),
		Err: "a client tried to upload a file; Onramp's TFTP server is read-only and refused it"})
	s.log.Warn("write request refused", "ip", ip, "file", printable(filename))
	return errors.New("access violation: this server is read-only")
}

func (s *Server) read(filename string, rf io.ReaderFrom) error {
	start := time.Now()
	ip := remoteIP(rf)
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: printable(filename),
			Err: fmt.Sprintf("Onramp is already sending %d files over TFTP; this request was turned away (the firmware retries)", s.cfg.MaxTransfers)})
		return errors.New("server busy")
	}
	name, err := Sanitize(filename)
	if err != nil {
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: printable(filename),
			Err: "the client asked for a file name Onramp refuses (" + err.Error() + "); nothing was sent"})
		s.log.Warn("refused file name", "ip", ip, "file", printable(filename), "err", err)
		return errors.New("access violation")
	}
	f, err := s.cfg.Root.Open(name)
	if err != nil {
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: name,
			Err: "the client asked for " + name + ", which Onramp does not have; check the boot files (iPXE binaries)"})
		s.log.Warn("file not found", "ip", ip, "file", name, "err", err)
		return errors.New("file not found")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: name,
			Err: "the client asked for " + name + ", which is not a regular file"})
		return errors.New("file not found")
	}
	if ot, ok := rf.(ptftp.OutgoingTransfer); ok {
		ot.SetSize(st.Size())
	}
	s.emit(netboot.Event{Kind: netboot.EventTFTPStart, IP: ip, File: name, Bytes: st.Size()})
	s.log.Debug("transfer start", "ip", ip, "file", name, "size", st.Size())

	// Buffered: pin/tftp reads one block at a time, a syscall each.
	n, err := rf.ReadFrom(&ctxReader{ctx: s.ctx, r: bufio.NewReaderSize(f, 64<<10)})
	dur := time.Since(start)
	switch {
	case err == nil:
		s.emit(netboot.Event{Kind: netboot.EventTFTPDone, IP: ip, File: name, Bytes: n, Duration: dur})
		s.log.Info("transfer done", "ip", ip, "file", name, "bytes", n, "duration", dur)
		return nil
	case n == 0 && isPeerAbortBeforeData(err):
		s.emit(netboot.Event{Kind: netboot.EventTFTPDone, IP: ip, File: name, Duration: dur,
			Detail: "size probe: the firmware asked only for the file size and stopped, as UEFI firmware does before the real download"})
		s.log.Debug("size probe", "ip", ip, "file", name)
		// The transfer is already closed; the error pin/tftp would send
		// back is dropped.
		return nil
	default:
		reason := explain(err, n, st.Size())
		s.emit(netboot.Event{Kind: netboot.EventTFTPError, IP: ip, File: name, Bytes: n, Duration: dur, Err: reason})
		s.log.Warn("transfer failed", "ip", ip, "file", name, "bytes", n, "duration", dur, "err", err)
		return err
	}
}

// isPeerAbortBeforeData reports whether the client answered the OACK with an
// ERROR packet: pin/tftp reports that as "sending block 0: code=N, ...".
func isPeerAbortBeforeData(err error) bool {
	return strings.HasPrefix(err.Error(), "sending block 0: code=")
}

func explain(err error, sent, size int64) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Sprintf("Onramp is shutting down; the transfer was stopped after %d of %d bytes", sent, size)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("the machine stopped acknowledging after %d of %d bytes (timeout): it may have rebooted, "+
			"or large blocks are dropped on the way (try a smaller MTU/blksize)", sent, size)
	case strings.Contains(err.Error(), "code="):
		return fmt.Sprintf("the machine aborted the transfer after %d of %d bytes (%s)", sent, size, printable(err.Error()))
	default:
		return fmt.Sprintf("the transfer failed after %d of %d bytes: %s", sent, size, printable(err.Error()))
	}
}

func (s *Server) emit(e netboot.Event) {
	e.Time = time.Now()
	s.sink.Emit(e)
}

func remoteIP(v any) string {
	if ot, ok := v.(interface{ RemoteAddr() net.UDPAddr }); ok {
		a := ot.RemoteAddr()
		return a.IP.String()
	}
	return ""
}

// printable makes an untrusted name safe for logs and events.
func printable(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}

// ctxReader stops a transfer once ctx is cancelled, so shutdown does not wait
// for a slow or dead client to time out.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
