// Package server runs Onramp's boot services on the one interface the
// technician chose: DHCP (isolated: full DHCP; proxy: proxyDHCP on 67 and
// 4011 beside the site's server), TFTP for the iPXE binaries, HTTP for the
// iPXE script and the boot assets, and in isolated mode a watch for foreign
// DHCP servers and IPv6 router advertisements. All of them run under one errgroup: when one fails, all stop.
//
// Mode "auto" probes the cart network first: no DHCP server answering →
// isolated; one answering → proxy. "isolated" refuses to start beside a
// foreign server unless AllowForeign is set (and says so in the log).
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"onramp/netboot"
	"onramp/netboot/dhcp"
	"onramp/netboot/httpboot"
	"onramp/netboot/ra"
	"onramp/netboot/tftp"
)

// Mode is how Onramp serves DHCP.
type Mode string

const (
	Auto     Mode = "auto"
	Isolated Mode = "isolated"
	Proxy    Mode = "proxy"
)

// ParseMode accepts "auto", "isolated" and "proxy".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, Isolated, Proxy:
		return m, nil
	}
	return "", fmt.Errorf("mode %q is not one of auto, isolated, proxy", s)
}

// Config configures the boot services.
type Config struct {
	Iface string // required: the interface cabled to the cart switch
	Mode  Mode   // default Auto
	// AllowForeign starts isolated mode even when another DHCP server
	// answers (two servers on one network: only for labs that know why).
	AllowForeign bool
	// ServerIP is Onramp's address on Iface; default: its first IPv4 address.
	ServerIP net.IP
	// Subnet served in isolated mode; default: the subnet of ServerIP on Iface.
	Subnet *net.IPNet
	// DataDir holds the DHCP lease journal (isolated mode).
	DataDir string
	// AssetsDir is served under /assets/ (kernels, initramfs, UKIs).
	AssetsDir string
	// IPXEDir holds the iPXE binaries; default /usr/lib/ipxe (Debian's ipxe).
	IPXEDir   string
	HTTPPort  int   // default 8080
	TFTPPort  int   // default 69
	RateLimit int64 // bytes/s per client on HTTP downloads; 0 = off
	// ProbeTimeout bounds the start-up probe for foreign DHCP servers; default 1.5 s.
	ProbeTimeout time.Duration
	// StuckAfter is how long a machine may sit between downloading iPXE
	// and asking for its script before it is reported stuck; default 60 s.
	StuckAfter time.Duration
	Booter     netboot.Booter
	Sink       netboot.Sink
	Logger     *slog.Logger
}

// Server is the set of boot services on one interface.
type Server struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	mode Mode // resolved mode while running

	macs  *ipToMAC
	stuck *stuckWatch
}

// New checks cfg and fills in defaults. It opens nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Iface == "" {
		return nil, errors.New("netboot: no interface chosen; Onramp serves nothing until you pick the one cabled to the cart switch")
	}
	if cfg.Mode == "" {
		cfg.Mode = Auto
	}
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return nil, fmt.Errorf("netboot: %w", err)
	}
	if cfg.Booter == nil {
		return nil, errors.New("netboot: no boot plan (Booter)")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("netboot: no data directory")
	}
	if cfg.IPXEDir == "" {
		cfg.IPXEDir = "/usr/lib/ipxe"
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 8080
	}
	if cfg.TFTPPort == 0 {
		cfg.TFTPPort = 69
	}
	if cfg.ProbeTimeout <= 0 {
		// DHCP servers on a LAN answer within milliseconds; 1.5 s (three
		// DISCOVERs) keeps a restart after a crash under 2 s.
		cfg.ProbeTimeout = 1500 * time.Millisecond
	}
	if cfg.Sink == nil {
		cfg.Sink = netboot.Discard
	}
	if cfg.StuckAfter <= 0 {
		cfg.StuckAfter = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "netboot", "iface", cfg.Iface)}
	s.stuck = newStuckWatch(cfg.Sink, cfg.StuckAfter)
	s.macs = &ipToMAC{next: s.stuck, m: make(map[string]string)}
	return s, nil
}

// Mode returns the mode in effect ("" before Run decided it).
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// ifaceAddr finds the first IPv4 address and its subnet on iface.
func ifaceAddr(iface string) (net.IP, *net.IPNet, error) {
	nic, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	addrs, err := nic.Addrs()
	if err != nil {
		return nil, nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.To4(), &net.IPNet{IP: ipn.IP.Mask(ipn.Mask), Mask: ipn.Mask}, nil
		}
	}
	return nil, nil, fmt.Errorf("interface %s has no IPv4 address: give it one (isolated mode: e.g. 10.77.0.1/24)", iface)
}

// Run decides the mode and serves until ctx ends or a service fails.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.cfg
	if cfg.ServerIP == nil || cfg.Subnet == nil {
		ip, subnet, err := ifaceAddr(cfg.Iface)
		if err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		if cfg.ServerIP == nil {
			cfg.ServerIP = ip
		}
		if cfg.Subnet == nil {
			cfg.Subnet = subnet
		}
	}
	mode, err := s.decideMode(ctx, cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.mode = mode
	s.mu.Unlock()

	bootFS, missing, err := tftp.BootFiles(cfg.IPXEDir)
	if err != nil {
		return fmt.Errorf("netboot: iPXE binaries: %w", err)
	}
	for _, m := range missing {
		s.log.Warn("boot file not available", "detail", m)
	}
	var assets *os.Root
	if cfg.AssetsDir != "" {
		if assets, err = os.OpenRoot(cfg.AssetsDir); err != nil {
			return fmt.Errorf("netboot: assets: %w", err)
		}
		defer assets.Close()
	}

	ip := cfg.ServerIP.String()
	httpSrv, err := httpboot.New(httpboot.Config{
		Addr:       net.JoinHostPort(ip, strconv.Itoa(cfg.HTTPPort)),
		OnLink:     cfg.Subnet,
		Assets:     rootFS(assets),
		BootFiles:  bootFS,
		Booter:     cfg.Booter,
		Sink:       s.macs,
		Logger:     cfg.Logger,
		RateLimit:  cfg.RateLimit,
		ScriptBase: "http://" + net.JoinHostPort(ip, strconv.Itoa(cfg.HTTPPort)),
	})
	if err != nil {
		return fmt.Errorf("netboot: %w", err)
	}
	tftpSrv, err := tftp.New(tftp.Config{
		Addr:   net.JoinHostPort(ip, strconv.Itoa(cfg.TFTPPort)),
		OnLink: cfg.Subnet,
		Root:   bootFS,
		Sink:   s.macs,
		Logger: cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("netboot: %w", err)
	}
	dmode := dhcp.Isolated
	if mode == Proxy {
		dmode = dhcp.Proxy
	}
	dhcpSrv, err := dhcp.New(dhcp.Config{
		Iface:     cfg.Iface,
		Mode:      dmode,
		ServerIP:  cfg.ServerIP,
		Subnet:    cfg.Subnet,
		HTTPPort:  cfg.HTTPPort,
		LeaseFile: filepath.Join(cfg.DataDir, "dhcp-leases.journal"),
		Booter:    cfg.Booter,
		Sink:      s.macs,
		Logger:    cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("netboot: %w", err)
	}
	// Bind TFTP and HTTP first so a busy port fails before DHCP answers
	// anyone with a boot file nobody serves.
	if _, err := httpSrv.Listen(); err != nil {
		return fmt.Errorf("netboot: %w", err)
	}
	if _, err := tftpSrv.Listen(); err != nil {
		return fmt.Errorf("netboot: %w", err)
	}

	s.log.Info("serving", "mode", string(mode), "server", ip, "http", cfg.HTTPPort, "tftp", cfg.TFTPPort)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpSrv.Run(gctx) })
	g.Go(func() error { return tftpSrv.Run(gctx) })
	g.Go(func() error { return dhcpSrv.Run(gctx) })
	g.Go(func() error { return s.stuck.Run(gctx) })
	if mode == Isolated {
		watch, err := dhcp.NewWatch(dhcp.WatchConfig{Iface: cfg.Iface, Own: []net.IP{cfg.ServerIP}, Sink: s.macs, Logger: cfg.Logger})
		if err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		g.Go(func() error { return watch.Run(gctx) })
		// Router advertisements (router lifetime 0: nobody routes through
		// us) end iPXE's ~13 s wait for IPv6 autoconfiguration per stage.
		adv, err := ra.New(ra.Config{Iface: cfg.Iface, Logger: cfg.Logger})
		if err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		g.Go(func() error {
			// Without IPv6 on the interface booting only gets slower:
			// say so, keep serving.
			if err := adv.Run(gctx); err != nil {
				s.log.Warn("router advertisements stopped; iPXE will wait ~13 s per stage for IPv6", "err", err)
			}
			return nil
		})
	}
	return g.Wait()
}

func (s *Server) decideMode(ctx context.Context, cfg Config) (Mode, error) {
	if cfg.Mode == Proxy {
		return Proxy, nil
	}
	found, err := dhcp.Probe(ctx, cfg.Iface, cfg.ProbeTimeout)
	if err != nil {
		return "", fmt.Errorf("netboot: probe for DHCP servers on %s: %w", cfg.Iface, err)
	}
	var foreign []dhcp.Found
	for _, f := range found {
		if !f.ServerID.Equal(cfg.ServerIP) && !f.Proxy() {
			foreign = append(foreign, f)
		}
	}
	if len(foreign) == 0 {
		if cfg.Mode == Auto {
			s.log.Info("no DHCP server answers: isolated mode")
		}
		return Isolated, nil
	}
	if cfg.Mode == Auto {
		s.log.Info("a DHCP server answers: proxy mode", "server", foreign[0].ServerID.String())
		return Proxy, nil
	}
	if cfg.AllowForeign {
		s.log.Warn("isolated mode beside a foreign DHCP server, as explicitly allowed", "server", foreign[0].String())
		return Isolated, nil
	}
	return "", fmt.Errorf("netboot: another DHCP server answers on %s (%s): refusing isolated mode, which would hand out conflicting addresses; use --mode proxy, unplug the site network, or override with --allow-foreign-dhcp", cfg.Iface, foreign[0])
}

func rootFS(r *os.Root) fs.FS {
	if r == nil {
		return nil
	}
	return r.FS()
}

// ipToMAC fills in the MAC of TFTP and HTTP events, which only know the
// client's IP, from the DHCP acknowledgements seen before.
type ipToMAC struct {
	next netboot.Sink
	mu   sync.Mutex
	m    map[string]string
}

// maxTracked bounds the map against floods of random MACs.
const maxTracked = 4096

func (t *ipToMAC) Emit(e netboot.Event) {
	t.mu.Lock()
	switch {
	case e.Kind == netboot.EventDHCPAck && e.IP != "" && e.MAC != "":
		if len(t.m) >= maxTracked {
			clear(t.m)
		}
		t.m[e.IP] = e.MAC
	case e.MAC == "" && e.IP != "":
		e.MAC = t.m[e.IP]
	}
	t.mu.Unlock()
	t.next.Emit(e)
}
