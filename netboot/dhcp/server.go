package dhcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"onramp/netboot"
)

// Mode says whether Onramp assigns addresses.
type Mode int

const (
	// Isolated: Onramp is the only DHCP server on the cart network and
	// assigns addresses from its pool.
	Isolated Mode = iota
	// Proxy: the site's DHCP server assigns addresses; Onramp only tells
	// network-boot clients what to load (proxyDHCP, ports 67 and 4011).
	Proxy
)

func (m Mode) String() string {
	if m == Proxy {
		return "proxy"
	}
	return "isolated"
}

// PXEPort is the proxyDHCP boot server discovery port (PXE 2.1).
const PXEPort = 4011

// Config configures a Server. Zero values get defaults in New.
type Config struct {
	Iface     string // required: the only interface served
	Mode      Mode
	ServerIP  net.IP     // required: Onramp's address on Iface (siaddr, server id, URLs)
	Subnet    *net.IPNet // isolated: default ServerIP/24
	PoolStart net.IP     // isolated: default .100 of Subnet
	PoolEnd   net.IP     // isolated: default last usable address of Subnet
	LeaseTime time.Duration
	Router    []net.IP // optional, none by default: the cart network has no way out
	DNS       []net.IP // optional
	HTTPPort  int      // default 8080
	LeaseFile string   // isolated: required, the lease journal
	Booter    netboot.Booter
	Sink      netboot.Sink
	Logger    *slog.Logger
	Workers   int // packets handled at once per socket; default 8
	// BooterTimeout bounds the question to the app per packet; default 2 s.
	BooterTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Server is the DHCP/proxyDHCP server. Create with New, run with Run.
type Server struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	pool *pool // set while Run runs (isolated mode)

	onReady func() // tests: called once the sockets are open
}

// New checks cfg and fills in defaults. It opens nothing: Run opens the
// sockets and the lease file, so a Server can be run again after Run returns.
func New(cfg Config) (*Server, error) {
	if cfg.Iface == "" {
		return nil, errors.New("new dhcp server: no interface chosen")
	}
	if cfg.ServerIP.To4() == nil {
		return nil, fmt.Errorf("new dhcp server: server address %q is not IPv4", cfg.ServerIP)
	}
	cfg.ServerIP = cfg.ServerIP.To4()
	if cfg.Booter == nil {
		return nil, errors.New("new dhcp server: no Booter")
	}
	if cfg.Sink == nil {
		cfg.Sink = netboot.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 8080
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.BooterTimeout <= 0 {
		cfg.BooterTimeout = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = time.Hour
	}
	if cfg.Mode == Isolated {
		if cfg.Subnet == nil {
			cfg.Subnet = &net.IPNet{IP: cfg.ServerIP.Mask(net.CIDRMask(24, 32)), Mask: net.CIDRMask(24, 32)}
		}
		if !cfg.Subnet.Contains(cfg.ServerIP) {
			return nil, fmt.Errorf("new dhcp server: server address %s is outside subnet %s", cfg.ServerIP, cfg.Subnet)
		}
		base := ip4u(cfg.Subnet.IP.Mask(cfg.Subnet.Mask))
		ones, bits := cfg.Subnet.Mask.Size()
		if bits != 32 || ones > 30 {
			return nil, fmt.Errorf("new dhcp server: subnet %s is too small", cfg.Subnet)
		}
		last := base | (1<<(32-ones) - 1) - 1
		if cfg.PoolStart == nil {
			start := base + 100
			if start >= last {
				start = base + 2
			}
			cfg.PoolStart = u2ip(start)
		}
		if cfg.PoolEnd == nil {
			cfg.PoolEnd = u2ip(last)
		}
		if !cfg.Subnet.Contains(cfg.PoolStart) || !cfg.Subnet.Contains(cfg.PoolEnd) || ip4u(cfg.PoolStart) > ip4u(cfg.PoolEnd) {
			return nil, fmt.Errorf("new dhcp server: pool %s-%s is not inside subnet %s", cfg.PoolStart, cfg.PoolEnd, cfg.Subnet)
		}
		if cfg.LeaseFile == "" {
			return nil, errors.New("new dhcp server: isolated mode needs a lease file")
		}
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "dhcp", "iface", cfg.Iface, "mode", cfg.Mode.String())}, nil
}

// Lease returns the address bound to mac while Run runs (isolated mode).
func (s *Server) Lease(mac net.HardwareAddr) (net.IP, bool) {
	s.mu.Lock()
	p := s.pool
	s.mu.Unlock()
	if p == nil {
		return nil, false
	}
	ip, _, ok := p.lookup(mac.String())
	return ip, ok
}

// Run serves until ctx is done. It opens the sockets (bound to cfg.Iface)
// and, in isolated mode, the lease file, and closes them all before
// returning. A cancelled ctx is a clean exit (nil).
func (s *Server) Run(ctx context.Context) error {
	ifi, err := net.InterfaceByName(s.cfg.Iface)
	if err != nil {
		return fmt.Errorf("run dhcp server: look up interface: %w", err)
	}
	own := ifi.HardwareAddr
	if err := hasAddr(ifi, s.cfg.ServerIP); err != nil {
		return fmt.Errorf("run dhcp server: %w", err)
	}

	var conns []*net.UDPConn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	c67, err := listenUDP(s.cfg.Iface, dhcpv4.ServerPort, false)
	if err != nil {
		return fmt.Errorf("run dhcp server: %w", err)
	}
	conns = append(conns, c67)
	var c4011 *net.UDPConn
	if s.cfg.Mode == Proxy {
		if c4011, err = listenUDP(s.cfg.Iface, PXEPort, false); err != nil {
			closeAll()
			return fmt.Errorf("run dhcp server: %w", err)
		}
		conns = append(conns, c4011)
	} else {
		store, err := openLeaseStore(s.cfg.LeaseFile)
		if err != nil {
			closeAll()
			return fmt.Errorf("run dhcp server: %w", err)
		}
		if store.Recovered > 0 {
			s.log.Warn("dropped a torn last record from the lease file (a crash during a write; that lease was never acknowledged)", "records", store.Recovered)
		}
		defer store.Close()
		s.mu.Lock()
		s.pool = newPool(s.cfg.PoolStart, s.cfg.PoolEnd, s.cfg.ServerIP, store)
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.pool = nil
			s.mu.Unlock()
		}()
	}
	s.log.Info("dhcp serving", "server_ip", s.cfg.ServerIP.String(), "workers", s.cfg.Workers)
	if s.onReady != nil {
		s.onReady()
	}

	var wg sync.WaitGroup
	for _, c := range conns {
		port := dhcpv4.ServerPort
		if c == c4011 {
			port = PXEPort
		}
		for range s.cfg.Workers {
			wg.Go(func() { s.serve(ctx, c, port, own) })
		}
	}
	wg.Go(func() {
		<-ctx.Done()
		closeAll()
	})
	if s.cfg.Mode == Isolated {
		wg.Go(func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s.pool.expirePending(s.cfg.Now())
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// serve is one worker: read a packet, handle it, send the reply. The number
// of workers bounds the work in flight; the kernel's socket buffer absorbs
// bursts and drops beyond it, as for any UDP server.
func (s *Server) serve(ctx context.Context, c *net.UDPConn, port int, own net.HardwareAddr) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.log.Warn("read dhcp packet", "err", err)
			continue
		}
		reply, to := s.handle(ctx, buf[:n], from, port, own)
		if reply == nil {
			continue
		}
		if _, err := c.WriteToUDP(reply.ToBytes(), to); err != nil && ctx.Err() == nil {
			s.log.Warn("send dhcp reply", "to", to.String(), "err", err)
		}
	}
}

func (s *Server) event(kind netboot.EventKind, r Request) netboot.Event {
	e := netboot.Event{Time: s.cfg.Now(), Kind: kind, Iface: s.cfg.Iface}
	if r.MAC != nil {
		e.MAC = r.MAC.String()
		e.UUID = r.UUID
		if r.Arch != netboot.ArchUnknown || r.Bootable() {
			e.Arch = r.Arch.String()
		}
	}
	return e
}

func (s *Server) ignore(r Request, reason string) {
	e := s.event(netboot.EventDHCPIgnored, r)
	e.Err = reason
	s.cfg.Sink.Emit(e)
}

// handle runs classify → decide → encode for one packet. It returns the
// reply and where to send it, or nil for silence.
func (s *Server) handle(ctx context.Context, b []byte, from *net.UDPAddr, port int, own net.HardwareAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	pkt, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.log.Debug("malformed packet", "from", from.String(), "err", err)
		s.ignore(Request{}, fmt.Sprintf("a malformed DHCP packet from %s was ignored: %v", from, err))
		return nil, nil
	}
	if pkt.OpCode == dhcpv4.OpcodeBootReply || from.IP.Equal(s.cfg.ServerIP) {
		return nil, nil // another server's reply, or our own packet looped back: never answered
	}
	r, err := Classify(pkt)
	if err != nil {
		s.ignore(r, "a DHCP packet that cannot be answered was ignored: "+err.Error())
		return nil, nil
	}
	log := s.log.With("mac", r.MAC.String(), "xid", r.XID.String(), "type", r.Type.String())
	if own != nil && r.MAC.String() == own.String() {
		// Loop prevention: our own probe (Watch) or a reflection of our traffic.
		log.Debug("ignored our own packet")
		return nil, nil
	}
	if r.Relayed && s.cfg.Mode == Isolated && !s.cfg.Subnet.Contains(r.GIAddr) {
		s.ignore(r, fmt.Sprintf("a request relayed from %s was ignored: that relay is not on Onramp's subnet %s", r.GIAddr, s.cfg.Subnet))
		return nil, nil
	}
	if port == PXEPort {
		return s.handlePXE(ctx, log, r, from)
	}
	if s.cfg.Mode == Proxy {
		return s.handleProxy(ctx, log, r)
	}
	return s.handleFull(ctx, log, r)
}

// decide asks the app about the machine. ok=false means stay silent (the
// reason is already reported).
func (s *Server) decide(ctx context.Context, r Request) (netboot.Decision, bool) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BooterTimeout)
	defer cancel()
	d, err := s.cfg.Booter.Boot(ctx, r.Machine())
	switch {
	case errors.Is(err, netboot.ErrNotApproved):
		s.ignore(r, "this machine is not on the allowlist, so Onramp did not answer it; approve it in the machine list to boot it")
		return d, false
	case err != nil:
		s.ignore(r, "Onramp could not decide what this machine boots, so it did not answer: "+err.Error())
		return d, false
	}
	return d, true
}

func (s *Server) lease(ip net.IP) Lease {
	return Lease{ServerIP: s.cfg.ServerIP, YourIP: ip, Mask: s.cfg.Subnet.Mask, LeaseTime: s.cfg.LeaseTime, Router: s.cfg.Router, DNS: s.cfg.DNS}
}

func (s *Server) handleFull(ctx context.Context, log *slog.Logger, r Request) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	now := s.cfg.Now()
	mac := r.MAC.String()
	switch r.Type {
	case dhcpv4.MessageTypeDiscover:
		s.cfg.Sink.Emit(s.event(netboot.EventDHCPDiscover, r))
		// The app is asked before an address is held, so a flood from
		// unapproved MACs never drains the pool.
		d, ok := s.decide(ctx, r)
		if !ok {
			return nil, nil
		}
		ip, err := s.pool.offer(mac, r.RequestedIP, now)
		if err != nil {
			log.Warn("no address to offer", "err", err)
			s.ignore(r, "no address was offered: "+err.Error())
			return nil, nil
		}
		boot := s.boot(r, d)
		reply := BuildOffer(r, s.lease(ip), boot)
		e := s.event(netboot.EventDHCPOffer, r)
		e.IP, e.File = ip.String(), boot.File
		s.cfg.Sink.Emit(e)
		// Debug, like Kea's: the ACK is the lease; an offer may be one of
		// several the client never takes.
		log.Debug("offer", "ip", ip.String(), "file", boot.File)
		return reply, ReplyAddr(r, reply)

	case dhcpv4.MessageTypeRequest:
		if r.ServerID != nil && !r.ServerID.Equal(s.cfg.ServerIP) {
			s.pool.cancel(mac) // the client chose another server's offer
			s.ignore(r, fmt.Sprintf("the machine accepted an offer from another DHCP server (%s); is a second DHCP server on the cart network?", r.ServerID))
			return nil, nil
		}
		s.cfg.Sink.Emit(s.event(netboot.EventDHCPRequest, r))
		d, ok := s.decide(ctx, r)
		if !ok {
			return nil, nil
		}
		want := r.RequestedIP
		if want == nil {
			want = r.CIAddr
		}
		if want == nil {
			return s.nak(log, r, "the request named no address")
		}
		if err := s.pool.commit(mac, want, s.cfg.LeaseTime, now); err != nil {
			if errors.Is(err, ErrNotOurs) || errors.Is(err, ErrAddrTaken) {
				return s.nak(log, r, fmt.Sprintf("address %s refused: %v", want, err))
			}
			log.Error("lease not recorded, no ACK sent", "err", err)
			s.ignore(r, "Onramp could not save the lease to disk, so it did not confirm it: "+err.Error())
			return nil, nil
		}
		boot := s.boot(r, d)
		reply := BuildAck(r, s.lease(want), boot)
		e := s.event(netboot.EventDHCPAck, r)
		e.IP, e.File = want.String(), boot.File
		s.cfg.Sink.Emit(e)
		log.Info("ack", "ip", want.String(), "file", boot.File)
		return reply, ReplyAddr(r, reply)

	case dhcpv4.MessageTypeRelease:
		if err := s.pool.release(mac); err != nil {
			log.Error("record release", "err", err)
		}
	case dhcpv4.MessageTypeDecline:
		if r.RequestedIP != nil {
			if err := s.pool.decline(mac, r.RequestedIP, now); err != nil {
				log.Error("record decline", "err", err)
			}
			s.ignore(r, fmt.Sprintf("the machine declined %s: another device already uses that address (a static IP inside Onramp's pool?)", r.RequestedIP))
		}
	default:
		log.Debug("message type not served")
	}
	return nil, nil
}

func (s *Server) nak(log *slog.Logger, r Request, why string) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	reply := BuildNak(r, s.cfg.ServerIP, why)
	e := s.event(netboot.EventDHCPNak, r)
	e.Err = "Onramp refused the machine's address request and told it to start over: " + why
	s.cfg.Sink.Emit(e)
	log.Info("nak", "why", why)
	return reply, ReplyAddr(r, reply)
}

// boot returns the boot part for a client that may get one; an empty Boot
// (address only) for others.
func (s *Server) boot(r Request, d netboot.Decision) Boot {
	if !r.Bootable() {
		return Boot{}
	}
	b, err := BootFor(r, d, s.cfg.ServerIP, s.cfg.HTTPPort)
	if err != nil {
		s.ignore(r, "the machine gets an address but no boot file: "+err.Error())
		return Boot{}
	}
	return b
}

func (s *Server) handleProxy(ctx context.Context, log *slog.Logger, r Request) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	// Proxy mode: only network-boot clients, only DISCOVERs; the site's
	// server handles everything about addresses.
	if r.Type != dhcpv4.MessageTypeDiscover || !r.Bootable() {
		return nil, nil
	}
	s.cfg.Sink.Emit(s.event(netboot.EventDHCPDiscover, r))
	d, ok := s.decide(ctx, r)
	if !ok {
		return nil, nil
	}
	b, err := BootFor(r, d, s.cfg.ServerIP, s.cfg.HTTPPort)
	if err != nil {
		s.ignore(r, "no proxy offer was sent: "+err.Error())
		return nil, nil
	}
	reply := BuildProxyOffer(r, s.cfg.ServerIP, b)
	e := s.event(netboot.EventProxyOffer, r)
	e.File = b.File
	s.cfg.Sink.Emit(e)
	log.Info("proxy offer", "file", b.File)
	return reply, ReplyAddr(r, reply)
}

// handlePXE answers a request on port 4011 (boot server discovery): the
// client has its address from the site server and asks us for its file.
func (s *Server) handlePXE(ctx context.Context, log *slog.Logger, r Request, from *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	if (r.Type != dhcpv4.MessageTypeRequest && r.Type != dhcpv4.MessageTypeInform) || !r.Bootable() {
		return nil, nil
	}
	s.cfg.Sink.Emit(s.event(netboot.EventDHCPRequest, r))
	d, ok := s.decide(ctx, r)
	if !ok {
		return nil, nil
	}
	b, err := BootFor(r, d, s.cfg.ServerIP, s.cfg.HTTPPort)
	if err != nil {
		s.ignore(r, "no proxy answer was sent: "+err.Error())
		return nil, nil
	}
	reply := BuildProxyAck(r, s.cfg.ServerIP, b)
	e := s.event(netboot.EventProxyOffer, r)
	e.File, e.IP = b.File, from.IP.String()
	e.Detail = "boot server discovery (port 4011)"
	s.cfg.Sink.Emit(e)
	log.Info("proxy ack", "file", b.File, "to", from.String())
	return reply, from
}

// hasAddr checks that ip is configured on ifi: siaddr, the server id and
// every URL name it, so clients could reach nothing otherwise.
func hasAddr(ifi *net.Interface, ip net.IP) error {
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return nil
		}
	}
	return fmt.Errorf("interface %s does not have address %s: assign it before serving", ifi.Name, ip)
}
