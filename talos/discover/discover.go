// Package discover looks at each machine that got a lease from Onramp:
// once it boots Talos (or the lab's simulator) into maintenance mode, its
// API on port 50000 answers over TLS with a self-signed certificate. The
// Discoverer connects with machinery's client, reads hardware, disks and
// SecureBoot/TPM state, and puts it on the machine's timeline as a
// "talos.maintenance" event, with the certificate fingerprint the
// technician can compare with the node's console.
package discover

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"onramp/netboot"
	"onramp/talos/node"
)

// EventMaintenance is the timeline step "the node answers in maintenance mode".
const EventMaintenance netboot.EventKind = "talos.maintenance"

// Config configures a Discoverer.
type Config struct {
	// Next receives every event, passed through, plus the discoveries.
	Next netboot.Sink
	// Port is the maintenance API port; default 50000.
	Port int
	// Wait is how long to keep trying a machine after its lease; default 15 min
	// (a TCG-emulated guest takes a minute or two to boot).
	Wait time.Duration
	// Every is the pause between attempts; default 3 s.
	Every time.Duration
	// MaxConcurrent bounds the attempts (connections) in flight at once;
	// default 16. A machine waiting for its next attempt holds none.
	MaxConcurrent int
	// MaxWatched bounds the machines being watched (each one goroutine,
	// mostly asleep); a lease beyond it is looked at on its next lease.
	// Default 1024.
	MaxWatched int
	Logger     *slog.Logger
	// Look replaces the real node query in tests.
	Look func(ctx context.Context, addr string) (map[string]string, error)
}

// Discoverer is a netboot.Sink that also probes leased machines. Run it.
type Discoverer struct {
	cfg  Config
	log  *slog.Logger
	jobs chan job

	mu       sync.Mutex
	pending  map[string]bool // IP → being probed
	attempts atomic.Int32    // Look calls running now
}

type job struct{ mac, ip string }

// New fills in defaults.
func New(cfg Config) *Discoverer {
	if cfg.Next == nil {
		cfg.Next = netboot.Discard
	}
	if cfg.Port == 0 {
		cfg.Port = 50000
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 15 * time.Minute
	}
	if cfg.Every <= 0 {
		cfg.Every = 3 * time.Second
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 16
	}
	if cfg.MaxWatched <= 0 {
		cfg.MaxWatched = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Look == nil {
		cfg.Look = Look
	}
	return &Discoverer{cfg: cfg, log: cfg.Logger.With("component", "discover"), jobs: make(chan job, 256), pending: map[string]bool{}}
}

// Emit passes e on and queues a probe when a machine got an address.
func (d *Discoverer) Emit(e netboot.Event) {
	d.cfg.Next.Emit(e)
	if e.Kind != netboot.EventDHCPAck || e.IP == "" || e.MAC == "" {
		return
	}
	d.mu.Lock()
	busy := d.pending[e.IP] || len(d.pending) >= d.cfg.MaxWatched
	if !busy {
		d.pending[e.IP] = true
	}
	d.mu.Unlock()
	if busy {
		return
	}
	select {
	case d.jobs <- job{mac: e.MAC, ip: e.IP}:
	default: // queue full: a flood; this machine is probed on its next lease
		d.done(e.IP)
	}
}

func (d *Discoverer) done(ip string) {
	d.mu.Lock()
	delete(d.pending, ip)
	d.mu.Unlock()
}

// Watching is how many machines are being watched for maintenance mode.
func (d *Discoverer) Watching() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// Attempts is how many attempts (connections to port 50000) run now; at
// most MaxConcurrent.
func (d *Discoverer) Attempts() int { return int(d.attempts.Load()) }

// Run watches queued machines until ctx ends: one goroutine a machine,
// which takes one of MaxConcurrent slots only while an attempt runs. So
// machines that never answer (BMCs, other operating systems, a switch
// asking for a lease) cannot keep the Talos nodes behind them waiting.
func (d *Discoverer) Run(ctx context.Context) error {
	sem := make(chan struct{}, d.cfg.MaxConcurrent)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-d.jobs:
			wg.Go(func() {
				defer d.done(j.ip)
				d.probe(ctx, j, sem)
			})
		}
	}
}

func (d *Discoverer) probe(ctx context.Context, j job, sem chan struct{}) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Wait)
	defer cancel()
	addr := net.JoinHostPort(j.ip, strconv.Itoa(d.cfg.Port))
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		d.attempts.Add(1)
		attrs, err := d.cfg.Look(ctx, addr)
		d.attempts.Add(-1)
		<-sem
		if err == nil {
			d.log.Info("node in maintenance mode", "mac", j.mac, "ip", j.ip, "serial", attrs["serial"])
			d.cfg.Next.Emit(netboot.Event{
				Time: time.Now(), Kind: EventMaintenance, MAC: j.mac, IP: j.ip, Attrs: attrs,
				Detail: fmt.Sprintf("%s %s, serial %s, SecureBoot %s, TPM %s", attrs["vendor"], attrs["product"], attrs["serial"], attrs["secureBoot"], attrs["tpm"]),
			})
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.cfg.Every):
		}
	}
}

// Look reads what Onramp shows about a maintenance-mode node at addr.
func Look(ctx context.Context, addr string) (map[string]string, error) {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := node.Maintenance(cctx, addr, node.WithRetry(1, time.Second), node.WithCallTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	hw, err := c.Hardware(cctx)
	if err != nil {
		return nil, err
	}
	sec, err := c.Security(cctx)
	if err != nil {
		return nil, err
	}
	attrs := map[string]string{
		"vendor":      hw.Vendor,
		"product":     hw.Product,
		"serial":      hw.Serial,
		"uuid":        hw.UUID,
		"secureBoot":  onOff(sec.SecureBoot),
		"tpm":         presentAbsent(sec.TPMPresent),
		"uki":         strconv.FormatBool(sec.BootedWithUKI),
		"fingerprint": c.Fingerprint(),
	}
	if v, err := c.Version(cctx); err == nil {
		attrs["talos"] = v.Tag
	}
	if disks, err := c.Disks(cctx); err == nil {
		attrs["disks"] = strconv.Itoa(len(disks))
		for i, dk := range disks {
			if i < 4 {
				attrs["disk"+strconv.Itoa(i)] = fmt.Sprintf("%s %s %s", dk.DevPath, humanSize(dk.Size), dk.Serial)
			}
		}
	}
	return attrs, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func presentAbsent(b bool) string {
	if b {
		return "present"
	}
	return "absent"
}

func humanSize(b uint64) string {
	const gib = 1 << 30
	if b >= gib {
		return strconv.FormatFloat(float64(b)/gib, 'f', 1, 64) + " GiB"
	}
	return strconv.FormatUint(b>>20, 10) + " MiB"
}
