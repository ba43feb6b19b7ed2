// Package ra sends IPv6 router advertisements (RFC 4861 §4.2, §6.2) on
// Onramp's cart interface in isolated mode.
//
// Why: iPXE starts IPv6 autoconfiguration on every network stage and waits
// about 13 s for a router advertisement before it gives up and goes on with
// IPv4. On a cart network with no IPv6 router that wait is paid at every
// stage of every boot. An RA with a prefix (fd77::/64, unique-local) ends the
// wait at once. The router lifetime is 0 (RFC 4861 §6.2.3: "not a default
// router"), so no host ever routes through Onramp; the prefix is on-link and
// autonomous so hosts may form addresses from it (RFC 4862).
//
// The sender multicasts an unsolicited RA to ff02::1 every Interval
// (randomised ±25 %, never faster than RFC 4861's 3 s minimum) and answers
// each router solicitation (ICMPv6 type 133) with a unicast RA, at most one
// every 100 ms. The raw socket is bound to the interface (SO_BINDTODEVICE)
// and sends with hop limit 255, as receivers require (§6.1.2).
package ra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ICMPv6 types.
const (
	TypeRouterSolicitation  = 133
	TypeRouterAdvertisement = 134
	minInterval             = 3 * time.Second
	solicitedGap            = 100 * time.Millisecond
)

// Config configures a Sender. Zero values get defaults in New.
type Config struct {
	Iface string
	// Prefix advertised on-link and autonomous; default fd77::/64.
	Prefix netip.Prefix
	// Interval between unsolicited RAs; default 10 s, at least 3 s.
	Interval time.Duration
	// ValidLifetime and PreferredLifetime of the prefix; defaults 1 h and 30 min.
	ValidLifetime, PreferredLifetime time.Duration
	Logger                           *slog.Logger
	// onReady is called once the socket is open (tests).
	onReady func()
}

// Sender advertises on one interface. Create with New, run with Run.
type Sender struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and fills in defaults; it opens nothing.
func New(cfg Config) (*Sender, error) {
	if cfg.Iface == "" {
		return nil, errors.New("new ra sender: no interface chosen")
	}
	if !cfg.Prefix.IsValid() {
		cfg.Prefix = netip.MustParsePrefix("fd77::/64")
	}
	if !cfg.Prefix.Addr().Is6() || cfg.Prefix.Addr().Is4In6() {
		return nil, fmt.Errorf("new ra sender: prefix %s is not IPv6", cfg.Prefix)
	}
	cfg.Prefix = cfg.Prefix.Masked()
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Interval < minInterval {
		cfg.Interval = minInterval
	}
	if cfg.ValidLifetime <= 0 {
		cfg.ValidLifetime = time.Hour
	}
	if cfg.PreferredLifetime <= 0 || cfg.PreferredLifetime > cfg.ValidLifetime {
		cfg.PreferredLifetime = cfg.ValidLifetime / 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Sender{cfg: cfg, log: cfg.Logger.With("component", "ra", "iface", cfg.Iface)}, nil
}

// Build encodes a router advertisement (the ICMPv6 message; the kernel fills
// in the checksum): hop limit 64, no flags, router lifetime 0, a source
// link-layer address option and one prefix information option (on-link,
// autonomous).
func Build(src net.HardwareAddr, prefix netip.Prefix, valid, preferred time.Duration) []byte {
	b := make([]byte, 16, 16+8+32)
	b[0] = TypeRouterAdvertisement
	b[4] = 64 // cur hop limit suggested to hosts
	// b[5] flags M/O = 0; b[6:8] router lifetime = 0; reachable, retrans = 0.
	if len(src) == 6 {
		b = append(b, 1, 1) // source link-layer address, 1×8 bytes
		b = append(b, src...)
	}
	p := make([]byte, 32)
	p[0], p[1] = 3, 4 // prefix information, 4×8 bytes
	p[2] = byte(prefix.Bits())
	p[3] = 0xc0 // L (on-link) | A (autonomous)
	binary.BigEndian.PutUint32(p[4:], uint32(valid/time.Second))
	binary.BigEndian.PutUint32(p[8:], uint32(preferred/time.Second))
	a := prefix.Masked().Addr().As16()
	copy(p[16:], a[:])
	return append(b, p...)
}

// Run advertises until ctx is done, then closes its socket. A cancelled ctx
// is a clean exit (nil).
func (s *Sender) Run(ctx context.Context) error {
	ifi, err := net.InterfaceByName(s.cfg.Iface)
	if err != nil {
		return fmt.Errorf("run ra sender: look up interface: %w", err)
	}
	conn, err := listen(ifi)
	if err != nil {
		return fmt.Errorf("run ra sender: %w", err)
	}
	if s.cfg.onReady != nil {
		s.cfg.onReady()
	}
	ra := Build(ifi.HardwareAddr, s.cfg.Prefix, s.cfg.ValidLifetime, s.cfg.PreferredLifetime)
	allNodes := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: ifi.Name}
	s.log.Info("sending router advertisements", "prefix", s.cfg.Prefix.String(), "interval", s.cfg.Interval.String())

	solicit := make(chan *net.IPAddr, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
					return
				}
				s.log.Warn("read icmpv6", "err", err)
				continue
			}
			if n < 8 || buf[0] != TypeRouterSolicitation || buf[1] != 0 {
				continue
			}
			to := allNodes
			if ip, ok := from.(*net.IPAddr); ok && !ip.IP.IsUnspecified() {
				to = &net.IPAddr{IP: ip.IP, Zone: ifi.Name}
			}
			select {
			case solicit <- to:
			default: // a reply is already due; this one folds into it
			}
		}
	}()
	defer func() {
		conn.Close()
		<-readDone
	}()

	send := func(to *net.IPAddr) {
		if _, err := conn.WriteTo(ra, to); err != nil && ctx.Err() == nil {
			s.log.Warn("send router advertisement", "to", to.String(), "err", err)
		}
	}
	send(allNodes)
	var lastSolicited time.Time
	for {
		jitter := time.Duration(rand.Int64N(int64(s.cfg.Interval/2))) - s.cfg.Interval/4
		t := time.NewTimer(s.cfg.Interval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
			send(allNodes)
		case to := <-solicit:
			t.Stop()
			if wait := solicitedGap - time.Since(lastSolicited); wait > 0 {
				time.Sleep(wait)
			}
			lastSolicited = time.Now()
			send(to)
		}
	}
}

// listen opens a raw ICMPv6 socket bound to ifi that receives only router
// solicitations and sends with hop limit 255.
func listen(ifi *net.Interface) (net.PacketConn, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return nil, fmt.Errorf("open icmpv6 socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "icmpv6-"+ifi.Name)
	defer f.Close() // net.FilePacketConn dups the descriptor
	if err := unix.BindToDevice(fd, ifi.Name); err != nil {
		return nil, fmt.Errorf("bind icmpv6 socket to %s: %w", ifi.Name, err)
	}
	for _, o := range []struct {
		name     string
		opt, val int
	}{
		{"IPV6_MULTICAST_HOPS", unix.IPV6_MULTICAST_HOPS, 255},
		{"IPV6_UNICAST_HOPS", unix.IPV6_UNICAST_HOPS, 255},
		{"IPV6_MULTICAST_IF", unix.IPV6_MULTICAST_IF, ifi.Index},
		{"IPV6_MULTICAST_LOOP", unix.IPV6_MULTICAST_LOOP, 0},
	} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, o.opt, o.val); err != nil {
			return nil, fmt.Errorf("set %s: %w", o.name, err)
		}
	}
	var filter unix.ICMPv6Filter
	for i := range filter.Data {
		filter.Data[i] = 0xffffffff // block all ...
	}
	filter.Data[TypeRouterSolicitation>>5] &^= 1 << (TypeRouterSolicitation & 31) // ... but RS
	if err := unix.SetsockoptICMPv6Filter(fd, unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &filter); err != nil {
		return nil, fmt.Errorf("set ICMPV6_FILTER: %w", err)
	}
	mreq := &unix.IPv6Mreq{Interface: uint32(ifi.Index)}
	copy(mreq.Multiaddr[:], net.ParseIP("ff02::2")) // all-routers: where RS go
	if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
		return nil, fmt.Errorf("join ff02::2: %w", err)
	}
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrap icmpv6 socket: %w", err)
	}
	return c, nil
}
