// Command talossim is the Talos node simulator that runs in the virtual lab's QEMU
// guests, started by the initramfs init after udhcpc configured the network. It
// reads /proc/cmdline (talos.config=, talos.events.sink=, talos.logging.kernel=,
// onramp.sim.*), SMBIOS from /sys/class/dmi/id, disks from /sys/block, SecureBoot
// from efivarfs and uses the TPM at /dev/tpmrm0, then serves the Talos API on
// :50000 until SIGTERM. Like Talos it publishes its events to the event sink and
// streams the guest's kernel log (/dev/kmsg) to the kernel log URLs, from the
// command line or from the applied config (EventSinkConfig, KmsgLogConfig).
//
// Build (static, no cgo):
//
//	CGO_ENABLED=0 go build -trimpath -ldflags=-s -o talossim ./lab/sim/cmd/talossim
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"onramp/lab/sim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "talossim: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmdline := flag.String("cmdline", "/proc/cmdline", "kernel command line to read (a file, for running outside a guest)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	raw, err := os.ReadFile(*cmdline)
	if err != nil {
		return fmt.Errorf("read %s: %w", *cmdline, err)
	}

	cl, err := sim.ParseCmdline(string(raw))
	if err != nil {
		return err
	}

	cfg := sim.Config{
		ListenAddr:               cl.ListenAddr,
		StateDir:                 cl.StateDir,
		ConfigURL:                cl.ConfigURL,
		UKISigningKeyFingerprint: cl.UKIFingerprint,
		PCRSigningKeyFingerprint: cl.PCRFingerprint,
		InstallDelay:             cl.InstallDelay,
		EtcdStartDelay:           5 * time.Second,
		Console:                  os.Stdout,
		Logger:                   log,
	}

	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/talossim"
	}

	if cfg.InstallDelay == 0 {
		cfg.InstallDelay = 3 * time.Second
	}

	sim.DefaultSources(&cfg)

	// a machine without SMBIOS (some VMs, containers) still runs, like Talos
	cfg.Hardware = func() (sim.Hardware, error) {
		hw, err := sim.ReadDMI("/sys/class/dmi/id")
		if err != nil {
			log.Warn("no SMBIOS system information", "err", err)
		}

		return hw, nil
	}

	if cl.BootedWithUKI != nil {
		read, override := cfg.Firmware, *cl.BootedWithUKI
		cfg.Firmware = func() (sim.Firmware, error) {
			fw, err := read()
			fw.BootedWithUKI = override

			return fw, err
		}
	}

	tpm, err := linuxtpm.Open("/dev/tpmrm0")

	switch {
	case err == nil:
		defer tpm.Close() //nolint:errcheck

		cfg.TPM = tpm

		log.Info("TPM 2.0 found", "device", "/dev/tpmrm0")
	case errors.Is(err, fs.ErrNotExist):
		log.Info("no TPM (no /dev/tpmrm0)")
	default:
		log.Warn("TPM unusable", "err", err)
	}

	cfg.EventsSink = cl.EventsSink
	if cl.KmsgURL != "" {
		cfg.KmsgURLs = []string{cl.KmsgURL}
	}

	// the guest's real kernel log when we may read it; else (not root, or
	// outside a guest with dmesg restricted) the console lines stand in
	if f, err := os.Open("/dev/kmsg"); err == nil {
		f.Close() //nolint:errcheck

		cfg.Kmsg = sim.DevKmsg("/dev/kmsg")
	} else {
		log.Info("kernel log not readable: sending the simulator's console lines instead", "err", err)
	}

	s, err := sim.New(cfg)
	if err != nil {
		return err
	}

	return s.Run(ctx)
}
