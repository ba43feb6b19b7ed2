// Package server runs Onramp's boot services on the one interface the
// technician chose: DHCP (isolated: full DHCP; proxy: proxyDHCP on 67 and
// 4011 beside the site's server), TFTP for the iPXE binaries, HTTP for the
// iPXE script and the boot assets, and in isolated mode a watch for foreign
// DHCP servers and IPv6 router advertisements, and the receivers for what
// Talos nodes report back (talos/events: the event sink and kernel logs,
// whose addresses go on the Talos kernel command line Onramp serves). All of
// them run under one errgroup: when one fails, all stop.
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
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"onramp/netboot"
	"onramp/netboot/dhcp"
	"onramp/netboot/httpboot"
	"onramp/netboot/ra"
	"onramp/netboot/tftp"
	"onramp/talos/events"
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
	// EventsPort is the Talos event sink (gRPC, siderolink events API;
	// Onramp uses 4002); KmsgPort the kernel log receiver (JSON lines over
	// TCP and UDP; Onramp uses 4001). 0 = not served. When served, kernel
	// boots get talos.events.sink= / talos.logging.kernel= pointing at
	// them unless their command line already sets those.
	EventsPort int
	KmsgPort   int
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
	booter := cfg.Booter
	if args := talosArgs(ip, cfg.EventsPort, cfg.KmsgPort); len(args) > 0 {
		booter = withKernelArgs(booter, args)
	}
	var receivers []func(context.Context) error
	var unused []io.Closer // receivers' sockets, closed if Run fails before serving
	serving := false
	defer func() {
		if !serving {
			for _, c := range unused {
				c.Close()
			}
		}
	}()
	if cfg.EventsPort > 0 {
		sink, err := events.NewSink(events.SinkConfig{
			Addr: net.JoinHostPort(ip, strconv.Itoa(cfg.EventsPort)), OnLink: cfg.Subnet,
			Resolver: s.resolver(cfg.Iface), Sink: s.macs, Logger: cfg.Logger,
		})
		if err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		if _, err := sink.Listen(); err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		unused = append(unused, sink)
		receivers = append(receivers, sink.Run)
	}
	if cfg.KmsgPort > 0 {
		kmsg, err := events.NewKmsg(events.KmsgConfig{
			Addr: net.JoinHostPort(ip, strconv.Itoa(cfg.KmsgPort)), OnLink: cfg.Subnet,
			Resolver: s.resolver(cfg.Iface), Sink: s.macs, Logger: cfg.Logger,
		})
		if err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		if _, _, err := kmsg.Listen(); err != nil {
			return fmt.Errorf("netboot: %w", err)
		}
		unused = append(unused, kmsg)
		receivers = append(receivers, kmsg.Run)
	}
	httpSrv, err := httpboot.New(httpboot.Config{
		Addr:       net.JoinHostPort(ip, strconv.Itoa(cfg.HTTPPort)),
		OnLink:     cfg.Subnet,
		Assets:     rootFS(assets),
		BootFiles:  bootFS,
		Booter:     booter,
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
		Booter:    booter,
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

	s.log.Info("serving", "mode", string(mode), "server", ip, "http", cfg.HTTPPort, "tftp", cfg.TFTPPort, "events", cfg.EventsPort, "kmsg", cfg.KmsgPort)
	g, gctx := errgroup.WithContext(ctx)
	serving = true
	for _, run := range receivers {
		g.Go(func() error { return run(gctx) })
	}
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

// MACForIP implements events.Resolver from the DHCP acknowledgements seen.
func (t *ipToMAC) MACForIP(ip netip.Addr) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mac, ok := t.m[ip.Unmap().String()]
	return mac, ok && mac != ""
}

// resolver finds a Talos node's MAC by its address: Onramp's own leases
// first, then the kernel's neighbour table on iface (proxy mode leases
// nothing; the node just talked to us, so the kernel knows its MAC).
func (s *Server) resolver(iface string) events.Resolver {
	return events.Resolvers{s.macs, events.NeighbourTable{Iface: iface}}
}

// talosArgs are the kernel arguments that point Talos at the receivers.
func talosArgs(ip string, eventsPort, kmsgPort int) []string {
	var args []string
	if eventsPort > 0 {
		args = append(args, "talos.events.sink="+net.JoinHostPort(ip, strconv.Itoa(eventsPort)))
	}
	if kmsgPort > 0 {
		args = append(args, "talos.logging.kernel=tcp://"+net.JoinHostPort(ip, strconv.Itoa(kmsgPort)))
	}
	return args
}

// withKernelArgs adds args to kernel (non-UKI) boot decisions whose command
// line does not already set the same parameter: the boot plan wins. A UKI's
// command line is baked into the signed image and cannot be changed.
func withKernelArgs(next netboot.Booter, args []string) netboot.Booter {
	return netboot.BooterFunc(func(ctx context.Context, m netboot.Machine) (netboot.Decision, error) {
		d, err := next.Boot(ctx, m)
		if err != nil || d.Kind != netboot.BootKernel {
			return d, err
		}
		return addKernelArgs(d, args), nil
	})
}

// addKernelArgs is withKernelArgs' decision, on a copy of d's command line.
func addKernelArgs(d netboot.Decision, args []string) netboot.Decision {
	have := map[string]bool{}
	for _, a := range d.Cmdline {
		k, _, _ := strings.Cut(a, "=")
		have[k] = true
	}
	cmdline := append([]string(nil), d.Cmdline...)
	for _, a := range args {
		if k, _, _ := strings.Cut(a, "="); !have[k] {
			cmdline = append(cmdline, a)
		}
	}
	d.Cmdline = cmdline
	return d
}

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
