package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"onramp/app"
	"onramp/netboot"
	"onramp/netboot/dhcp"
	"onramp/netboot/server"
	"onramp/talos/discover"
)

const netbootUsage = `Usage:
  onramp netboot --iface IF [--mode auto|isolated|proxy] --data DIR [--assets DIR]
                 [--plan plan.json] [--http-port 8080] [--allow-foreign-dhcp]
                 [--events-port 4002] [--kmsg-port 4001]

Serves DHCP (or proxyDHCP), TFTP and HTTP boot on IF only, headless, with JSON logs
on stderr and one JSON event per line on stdout. The boot plan says what each
machine boots (see app/bootplan.go); without one, machines get iPXE and are told
to boot from their disks. Talos nodes report back to Onramp on the same address:
events on --events-port (siderolink events API) and kernel logs on --kmsg-port
(JSON lines, TCP and UDP); kernel boots get talos.events.sink= and
talos.logging.kernel= pointing there unless the plan sets them. 0 turns one off.
SIGUSR1 logs one "runtime" line: goroutines, heap, and the machines discovery
watches and is connecting to.

`

// Netboot implements `onramp netboot`.
func Netboot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("onramp netboot", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(fset.Output(), netbootUsage); fset.PrintDefaults() }
	iface := fset.String("iface", "", "the interface cabled to the cart switch (required)")
	mode := fset.String("mode", "auto", "auto | isolated | proxy")
	data := fset.String("data", "", "data directory for leases (required)")
	assets := fset.String("assets", "", "boot assets, served under /assets/")
	plan := fset.String("plan", "", "boot plan JSON file")
	ipxeDir := fset.String("ipxe-dir", "/usr/lib/ipxe", "directory with the iPXE binaries")
	httpPort := fset.Int("http-port", 8080, "HTTP port for scripts and assets")
	eventsPort := fset.Int("events-port", 4002, "Talos event sink port (gRPC, siderolink events API); 0 = off")
	kmsgPort := fset.Int("kmsg-port", 4001, "Talos kernel log port (JSON lines over TCP and UDP); 0 = off")
	rate := fset.Int64("rate-limit", 0, "bytes/s per client on HTTP downloads (0 = off)")
	stuckAfter := fset.Duration("stuck-after", 60*time.Second, "report a machine stuck when it loaded iPXE but asked for no script within this time")
	discoverNodes := fset.Bool("discover", true, "look at each leased machine's Talos maintenance API (port 50000)")
	allowForeign := fset.Bool("allow-foreign-dhcp", false, "start isolated mode even if another DHCP server answers")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *iface == "" || *data == "" {
		fset.Usage()
		return errors.New("netboot: --iface and --data are required")
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--events-port", *eventsPort}, {"--kmsg-port", *kmsgPort}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("netboot: %s %d is not a port (0 turns it off)", p.name, p.v)
		}
	}
	m, err := server.ParseMode(*mode)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("netboot: %w", err)
	}
	var booter netboot.Booter
	if *plan != "" {
		// Re-read when it changes: the SecureBoot step marks machines for
		// key enrollment while the services run.
		p, err := app.OpenPlanFile(*plan)
		if err != nil {
			return err
		}
		booter = p
	} else {
		p, _ := app.NewBootPlan(app.PlanSpec{})
		booter = p
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	events := newJSONLines(stdout)
	defer events.Close()
	if *allowForeign {
		log.Warn("--allow-foreign-dhcp given: isolated mode will start even beside another DHCP server")
	}
	// Every machine that gets a lease is looked at once it answers in
	// Talos maintenance mode; the finding goes on its timeline.
	disc := discover.New(discover.Config{Next: events, Logger: log})
	var sink netboot.Sink = disc
	if !*discoverNodes {
		sink = events
	}
	srv, err := server.New(server.Config{
		Iface: *iface, Mode: m, AllowForeign: *allowForeign, DataDir: *data,
		AssetsDir: *assets, IPXEDir: *ipxeDir, HTTPPort: *httpPort, RateLimit: *rate,
		StuckAfter: *stuckAfter, Booter: booter, Sink: sink, Logger: log,
		EventsPort: *eventsPort, KmsgPort: *kmsgPort,
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	// Before anything can signal: SIGUSR1's default action ends the process.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	g.Go(func() error {
		logRuntime(gctx, log, usr1, func() []any {
			return []any{"discover_watching", disc.Watching(), "discover_attempts", disc.Attempts()}
		})
		return nil
	})
	if *discoverNodes {
		g.Go(func() error { return disc.Run(gctx) })
	}
	return g.Wait()
}

const probeUsage = `Usage:
  onramp probe-dhcp --iface IF [--timeout 4s]

Sends DHCP DISCOVERs on IF and lists every server that answers. Exit status 0 when
none answers, 3 when any does.

`

// ErrFoundDHCP is returned by ProbeDHCP when a server answered (exit 3).
var ErrFoundDHCP = errors.New("a DHCP server answered")

// ProbeDHCP implements `onramp probe-dhcp`.
func ProbeDHCP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("onramp probe-dhcp", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(fset.Output(), probeUsage); fset.PrintDefaults() }
	iface := fset.String("iface", "", "interface to probe (required)")
	timeout := fset.Duration("timeout", 4*time.Second, "how long to listen for answers")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *iface == "" {
		fset.Usage()
		return errors.New("probe-dhcp: --iface is required")
	}
	found, err := dhcp.Probe(ctx, *iface, *timeout)
	if err != nil {
		return fmt.Errorf("probe-dhcp: %w", err)
	}
	if len(found) == 0 {
		fmt.Fprintf(stdout, "no DHCP server answered on %s within %s\n", *iface, *timeout)
		return nil
	}
	for _, f := range found {
		fmt.Fprintln(stdout, f.String())
	}
	return ErrFoundDHCP
}

// logRuntime logs one "runtime" line (goroutines, heap, and extra's
// attributes) each time the process gets SIGUSR1 (on sig), until ctx
// ends: how a long-running netboot, and make bench before and after its
// load, is checked for leaks without a debug port on the cart network.
func logRuntime(ctx context.Context, log *slog.Logger, sig <-chan os.Signal, extra func() []any) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			attrs := []any{"component", "runtime", "goroutines", runtime.NumGoroutine(),
				"heap_alloc", ms.HeapAlloc, "heap_sys", ms.HeapSys, "gc_cycles", ms.NumGC}
			log.Info("runtime", append(attrs, extra()...)...)
		}
	}
}
