package dhcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"onramp/netboot"
)

// Found is one DHCP server that answered a probe.
type Found struct {
	ServerID    net.IP // option 54 (or the packet's source when absent)
	From        net.IP // source address of the reply
	OfferedIP   net.IP // yiaddr; unset for a proxyDHCP server
	NextServer  net.IP // siaddr
	BootFile    string // option 67, else the file field
	VendorClass string // option 60 of the reply ("PXEClient" for proxyDHCP)
}

// Proxy reports whether the server only gives boot options (proxyDHCP).
func (f Found) Proxy() bool { return f.OfferedIP == nil || f.OfferedIP.IsUnspecified() }

func (f Found) String() string {
	kind := "DHCP server"
	if f.Proxy() {
		kind = "proxyDHCP server"
	}
	s := fmt.Sprintf("%s %s", kind, f.ServerID)
	if !f.Proxy() {
		s += " offered " + f.OfferedIP.String()
	}
	if f.BootFile != "" {
		s += fmt.Sprintf(", boot file %q", f.BootFile)
		if f.NextServer != nil && !f.NextServer.IsUnspecified() {
			s += " from " + f.NextServer.String()
		}
	}
	return s
}

const probeDiscovers = 3 // DISCOVERs per probe, spread over the timeout

// Probe broadcasts DISCOVERs on iface (from port 68, socket bound to iface)
// and lists every server that answers within timeout. It looks like a BIOS
// PXE client, so proxyDHCP servers answer too. It never sends a REQUEST, so
// no lease is taken. The DISCOVERs carry iface's own MAC, which Onramp's own
// server recognises and never answers.
func Probe(ctx context.Context, iface string, timeout time.Duration) ([]Found, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("probe dhcp: look up interface: %w", err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("probe dhcp: interface %s has no Ethernet address", iface)
	}
	c, err := listenUDP(iface, dhcpv4.ClientPort, true)
	if err != nil {
		return nil, fmt.Errorf("probe dhcp: %w", err)
	}
	defer c.Close()

	disc, err := dhcpv4.New(
		dhcpv4.WithHwAddr(ifi.HardwareAddr),
		dhcpv4.WithHWType(iana.HWTypeEthernet),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName, dhcpv4.OptionVendorSpecificInformation),
	)
	if err != nil {
		return nil, fmt.Errorf("probe dhcp: build discover: %w", err)
	}
	raw := disc.ToBytes()
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}

	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()

	found := map[string]Found{}
	buf := make([]byte, 1500)
	step := timeout / probeDiscovers
	next := time.Now()
	sent := 0
	for {
		now := time.Now()
		if !now.Before(deadline) || ctx.Err() != nil {
			break
		}
		if sent < probeDiscovers && !now.Before(next) {
			disc.NumSeconds = uint16(sent)
			raw = disc.ToBytes()
			if _, err := c.WriteToUDP(raw, bcast); err != nil {
				return nil, fmt.Errorf("probe dhcp: send discover on %s: %w", iface, err)
			}
			sent++
			next = now.Add(step)
		}
		wake := deadline
		if sent < probeDiscovers && next.Before(wake) {
			wake = next
		}
		c.SetReadDeadline(wake)
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return nil, fmt.Errorf("probe dhcp: read: %w", err)
		}
		p, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || p.OpCode != dhcpv4.OpcodeBootReply || p.TransactionID != disc.TransactionID ||
			p.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		f := Found{
			ServerID:    p.ServerIdentifier(),
			From:        from.IP,
			OfferedIP:   p.YourIPAddr,
			NextServer:  p.ServerIPAddr,
			BootFile:    p.BootFileNameOption(),
			VendorClass: p.ClassIdentifier(),
		}
		if f.BootFile == "" {
			f.BootFile = p.BootFileName
		}
		if f.ServerID == nil {
			f.ServerID = from.IP
		}
		if f.OfferedIP.IsUnspecified() {
			f.OfferedIP = nil
		}
		found[f.ServerID.String()+"/"+fmt.Sprint(f.Proxy())] = f
	}
	out := make([]Found, 0, len(found))
	for _, f := range found {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return ip4u(out[i].ServerID) < ip4u(out[j].ServerID) })
	return out, nil
}

// WatchConfig configures a Watch.
type WatchConfig struct {
	Iface string
	// Own lists Onramp's own server addresses; their answers are not foreign.
	Own []net.IP
	// Period between probes, randomised by ±25 %; default 30 s, capped so
	// that an alarm comes within 60 s of a foreign server appearing.
	Period time.Duration
	// Timeout of one probe; default 3 s.
	Timeout time.Duration
	Sink    netboot.Sink
	Logger  *slog.Logger
	// ProbeFunc replaces Probe in tests; default Probe.
	ProbeFunc func(ctx context.Context, iface string, timeout time.Duration) ([]Found, error)
}

// Watch probes the cart network now and then while Onramp runs in isolated
// mode and raises EventForeignDHCP when another DHCP server answers.
type Watch struct {
	cfg WatchConfig
	log *slog.Logger
}

// maxWatchPeriod keeps period + jitter + probe timeout under 60 s.
const maxWatchPeriod = 45 * time.Second

// NewWatch fills in defaults.
func NewWatch(cfg WatchConfig) (*Watch, error) {
	if cfg.Iface == "" {
		return nil, errors.New("new dhcp watch: no interface chosen")
	}
	if cfg.Period <= 0 {
		cfg.Period = 30 * time.Second
	}
	if cfg.Period*5/4 > maxWatchPeriod {
		cfg.Period = maxWatchPeriod * 4 / 5
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Sink == nil {
		cfg.Sink = netboot.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ProbeFunc == nil {
		cfg.ProbeFunc = Probe
	}
	return &Watch{cfg: cfg, log: cfg.Logger.With("component", "dhcp-watch", "iface", cfg.Iface)}, nil
}

// Run probes until ctx is done; the first probe runs at once.
func (w *Watch) Run(ctx context.Context) error {
	for {
		found, err := w.cfg.ProbeFunc(ctx, w.cfg.Iface, w.cfg.Timeout)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.log.Warn("probe for foreign dhcp servers", "err", err)
		}
		for _, f := range found {
			if w.own(f) {
				continue
			}
			w.log.Warn("foreign dhcp server", "server", f.ServerID.String(), "offered", f.OfferedIP.String())
			w.cfg.Sink.Emit(netboot.Event{
				Time:   time.Now(),
				Kind:   netboot.EventForeignDHCP,
				Iface:  w.cfg.Iface,
				IP:     f.ServerID.String(),
				File:   f.BootFile,
				Detail: f.String(),
				Err: fmt.Sprintf("another DHCP server (%s) answers on %s. Two DHCP servers on one network hand out conflicting addresses: "+
					"unplug the cart from the site network, or restart Onramp in proxy mode so the site server assigns addresses.", f.ServerID, w.cfg.Iface),
			})
		}
		jitter := time.Duration(rand.Int64N(int64(w.cfg.Period/2))) - w.cfg.Period/4
		t := time.NewTimer(w.cfg.Period + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (w *Watch) own(f Found) bool {
	for _, ip := range w.cfg.Own {
		if ip.Equal(f.ServerID) || ip.Equal(f.From) {
			return true
		}
	}
	return false
}
