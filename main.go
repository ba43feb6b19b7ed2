// Command onramp turns new servers into a SecureBoot-locked, TPM-encrypted
// Talos Linux cluster in one offline visit. This file is wiring only: it
// picks a face (desktop window, kiosk, web server) or a CLI verb and hands
// over to the packages that do the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sync/errgroup"

	"onramp/app"
	"onramp/app/cli"
	"onramp/frontend"
	"onramp/lab"
)

// Stamped by the Makefile: -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var exit exitCode
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "onramp:", err)
		os.Exit(1)
	}
}

// exitCode ends the process with a specific status and no message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `Usage:
  onramp [--kiosk] [--data DIR] [--admin-pin PIN]   the desktop app (web server when no display)
  onramp serve [--listen ADDR] [--data DIR] [--pin PIN] [--lab-netns NS] [--lab-cache DIR] [--lab-simulator PATH]
                                                     the same UI over HTTP for a browser or tablet
  onramp version                                     versions of Onramp, Go and Talos machinery
  onramp netboot --iface IF --data DIR [--mode auto|isolated|proxy] [--assets DIR] [--plan FILE]
                                                     DHCP/TFTP/HTTP boot services, headless
  onramp probe-dhcp --iface IF [--timeout 4s]       list DHCP servers answering on IF (exit 3 if any)
  onramp lab up [--machines 3] [--mix] | status | down
                                                     the virtual lab: QEMU machines netbooting from Onramp
  onramp talos gen --cluster NAME --endpoint URL --out DIR
                                                     export Talos configs and talosconfig (mode 0600)
  onramp handoff open BUNDLE (--identity FILE | --passphrase-file FILE) --out DIR [--sha256 HEX]
                                                     decrypt and check a handoff bundle (fleet side)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return serve(ctx, args[1:], stderr)
		case "version", "--version":
			return printVersion(stdout)
		case "netboot":
			return cli.Netboot(ctx, args[1:], stdout, stderr)
		case "probe-dhcp":
			err := cli.ProbeDHCP(ctx, args[1:], stdout, stderr)
			if errors.Is(err, cli.ErrFoundDHCP) {
				return exitCode(3)
			}
			return err
		case "lab":
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("lab: find own binary: %w", err)
			}
			return cli.Lab(ctx, args[1:], stdout, stderr, lab.ExecNetboot(exe))
		case "talos":
			if len(args) < 2 || args[1] != "gen" {
				fmt.Fprint(stderr, usage)
				return errors.New("talos: the only subcommand is gen")
			}
			return cli.TalosGen(ctx, args[2:], stdout, stderr)
		case "handoff":
			return cli.Handoff(ctx, args[1:], stdout, stderr)
		case "help", "-h", "--help":
			fmt.Fprint(stdout, usage)
			return nil
		}
		if args[0] != "" && args[0][0] != '-' {
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("unknown command %q", args[0])
		}
	}
	return desktop(ctx, args, stderr)
}

func build() app.BuildInfo { return app.BuildInfo{Version: version, Commit: commit} }

func printVersion(w io.Writer) error {
	_, err := fmt.Fprintf(w, "onramp %s\ncommit %s\ngo %s\ntalos machinery %s\n",
		version, commit, runtime.Version(), app.ModuleVersion("github.com/siderolabs/talos/pkg/machinery"))
	return err
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "onramp")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "onramp")
	}
	return "onramp-data"
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func desktop(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("onramp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kiosk := fs.Bool("kiosk", false, "full-screen, frameless; leaving needs the admin PIN")
	data := fs.String("data", defaultDataDir(), "data directory")
	adminPIN := fs.String("admin-pin", os.Getenv("ONRAMP_ADMIN_PIN"), "PIN that leaves kiosk mode (or ONRAMP_ADMIN_PIN)")
	listen := fs.String("listen", "127.0.0.1:8080", "address for the web UI when there is no display")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !app.HasDisplay() || !desktopBuild {
		reason := "no display found (DISPLAY and WAYLAND_DISPLAY are unset)"
		if !desktopBuild {
			reason = "this binary was built without the desktop window (build with `make build`)"
		}
		fmt.Fprintf(stderr, "onramp: %s; serving the UI on http://%s instead\n", reason, *listen)
		return serve(ctx, []string{"--listen", *listen, "--data", *data}, stderr)
	}
	mode := app.ModeDesktop
	if *kiosk {
		mode = app.ModeKiosk
	}
	log := newLogger(stderr)
	a, err := app.New(app.Config{Build: build(), DataDir: *data, Mode: mode, AdminPIN: *adminPIN, Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()
	return app.RunDesktop(ctx, a, frontend.UI())
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("onramp serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve the UI on; beyond loopback a PIN is required")
	data := fs.String("data", defaultDataDir(), "data directory")
	pin := fs.String("pin", os.Getenv("ONRAMP_PIN"), "access PIN for non-loopback clients (or ONRAMP_PIN)")
	// The virtual lab's `lab up --netns/--cache/--simulator`, for runs beside
	// other labs (the browser e2e uses its own namespace and a shared cache).
	labNetNS := fs.String("lab-netns", os.Getenv("ONRAMP_LAB_NETNS"), "network namespace of the virtual lab (or ONRAMP_LAB_NETNS; default: lab up's)")
	labCache := fs.String("lab-cache", os.Getenv("ONRAMP_LAB_CACHE"), "virtual lab download and build cache (or ONRAMP_LAB_CACHE; default <data>/lab/cache)")
	labSim := fs.String("lab-simulator", os.Getenv("ONRAMP_TALOSSIM"), "talossim binary for the lab's guests (or ONRAMP_TALOSSIM; default beside onramp, then PATH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(stderr)
	a, err := app.New(app.Config{
		Build: build(), DataDir: *data, Mode: app.ModeWeb,
		AuthRequired: !app.IsLoopbackListen(*listen), Logger: log,
		LabNetNS: *labNetNS, LabCache: *labCache, LabSimulator: *labSim,
	})
	if err != nil {
		return err
	}
	defer a.Close()
	web, err := app.NewWeb(a, app.WebConfig{Listen: *listen, PIN: *pin, UI: frontend.UI(), Logger: log})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return web.Run(ctx) })
	return g.Wait()
}
