package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"onramp/lab"
)

// NetbootRunner serves Onramp's netboot inside the lab's namespace. main.go
// passes lab.ExecNetboot(exe) with exe from os.Executable(): the onramp
// binary re-runs itself as `onramp netboot` under `ip netns exec`.
type NetbootRunner = lab.Netboot

const labUsage = `Usage:
  onramp lab up [--machines 3] [--firmware uefi|uefi-secureboot|bios] [--keys site|vendor|setup]
                [--tpm] [--disk 8G] [--mix] [--data DIR] [--cache DIR] [--simulator PATH]
      Build the lab network and machines, serve Onramp's netboot on the lab bridge
      (10.77.0.1 on br0 in namespace onramp-lab) and run until Ctrl-C, then tear down.
      --mix cycles the machines through uefi+tpm, bios, uefi-secureboot/site+tpm,
      uefi-secureboot/vendor and uefi-secureboot/setup.
  onramp lab status [--data DIR]
      One line per machine: name, MAC, firmware, state.
  onramp lab down [--data DIR]
      Stop a running lab and remove what a crashed run left behind.

Needs root, qemu-system-x86, ovmf, ipxe, swtpm, busybox-static, sbsigntool, cpio,
and apt access the first time (the Debian kernel and systemd-boot stub are downloaded
into the cache).
`

// defaultLabData is the lab's data directory when --data is not given.
func defaultLabData() string {
	if d := os.Getenv("ONRAMP_LAB_DATA"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "onramp-lab")
	}
	return filepath.Join(home, ".local", "state", "onramp", "lab")
}

// Lab implements `onramp lab up|status|down`.
func Lab(ctx context.Context, args []string, stdout, stderr io.Writer, netboot NetbootRunner) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, labUsage)
		return errors.New("lab: want up, status or down")
	}
	switch args[0] {
	case "up":
		return labUp(ctx, args[1:], stdout, stderr, netboot)
	case "status":
		return labStatus(args[1:], stdout, stderr)
	case "down":
		return labDown(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, labUsage)
		return nil
	}
	fmt.Fprint(stderr, labUsage)
	return fmt.Errorf("lab: unknown subcommand %q", args[0])
}

// ParseSize reads a disk size: bytes, or a number with K, M, G or T
// (powers of 1024, optional trailing B or iB).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<50)/mult {
		return 0, fmt.Errorf("disk size %q: want e.g. 8G, 512M or a byte count", s)
	}
	return v * mult, nil
}

// LabMachines returns the machines `lab up` creates for its flags.
func LabMachines(n int, fw lab.Firmware, keys lab.Keys, tpm bool, disk int64, mix bool) []lab.Machine {
	type variant struct {
		fw   lab.Firmware
		keys lab.Keys
		tpm  bool
	}
	mixed := []variant{
		{lab.FirmwareUEFI, "", true},
		{lab.FirmwareBIOS, "", false},
		{lab.FirmwareUEFISecureBoot, lab.KeysSite, true},
		{lab.FirmwareUEFISecureBoot, lab.KeysVendor, false},
		{lab.FirmwareUEFISecureBoot, lab.KeysSetup, true},
	}
	var ms []lab.Machine
	for i := 1; i <= n; i++ {
		v := variant{fw, keys, tpm}
		if mix {
			v = mixed[(i-1)%len(mixed)]
		}
		ms = append(ms, lab.NewMachine(i, v.fw, v.keys, v.tpm, disk))
	}
	return ms
}

// findSimulator looks for the talossim binary beside the onramp executable,
// then on PATH.
func findSimulator() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "talossim")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	if p, err := exec.LookPath("talossim"); err == nil {
		return p
	}
	return ""
}

func labUp(ctx context.Context, args []string, stdout, stderr io.Writer, netboot NetbootRunner) error {
	fset := flag.NewFlagSet("onramp lab up", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(fset.Output(), labUsage); fset.PrintDefaults() }
	n := fset.Int("machines", 3, "number of machines (1-50)")
	fwName := fset.String("firmware", "uefi", "uefi | uefi-secureboot | bios")
	keysName := fset.String("keys", "site", "SecureBoot keys for uefi-secureboot: site | vendor | setup")
	tpm := fset.Bool("tpm", false, "give every machine a TPM 2.0 (swtpm)")
	diskStr := fset.String("disk", "8G", "virtual disk size per machine (sparse)")
	mix := fset.Bool("mix", false, "mix firmware, SecureBoot keys and TPMs across machines")
	data := fset.String("data", defaultLabData(), "lab data directory")
	cache := fset.String("cache", "", "download and build cache (default <data>/cache)")
	sim := fset.String("simulator", "", "talossim binary for the guests (default: beside onramp, then PATH; \"none\" for none)")
	nsName := fset.String("netns", lab.DefaultNetNS, "network namespace name")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("lab up: unexpected argument %q", fset.Arg(0))
	}
	if *n < 1 || *n > 50 {
		return fmt.Errorf("lab up: --machines %d: want 1 to 50", *n)
	}
	fw, err := lab.ParseFirmware(*fwName)
	if err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	keys, err := lab.ParseKeys(*keysName)
	if err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	disk, err := ParseSize(*diskStr)
	if err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	if os.Geteuid() != 0 {
		return errors.New("lab up: needs root (network namespace, taps)")
	}
	switch *sim {
	case "":
		*sim = findSimulator()
	case "none":
		*sim = ""
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if *sim == "" {
		log.Warn("no talossim binary found: guests will boot and report, but not run the Talos node simulator")
	}
	if err := os.MkdirAll(*data, 0o755); err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	machines := LabMachines(*n, fw, keys, *tpm, disk, *mix)
	l, err := lab.New(lab.Config{
		DataDir: *data, CacheDir: *cache, NetNS: *nsName, Machines: machines,
		Netboot: netboot, Simulator: *sim, Log: log,
	})
	if err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-l.Ready:
	}
	fmt.Fprintf(stdout, "lab up: %d machines on bridge br0 (10.77.0.1/24) in namespace %s; data in %s; Ctrl-C stops and tears down\n",
		len(machines), *nsName, *data)
	last := map[string]string{}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		lines, _, err := lab.Status(*data)
		if err == nil {
			for _, sl := range lines {
				if last[sl.Name] != sl.State {
					last[sl.Name] = sl.State
					fmt.Fprintf(stdout, "%s  %-8s %s  %-26s %s\n", time.Now().Format("15:04:05"), sl.Name, sl.MAC, sl.Firmware, sl.State)
				}
			}
		}
		select {
		case err := <-done:
			fmt.Fprintln(stdout, "lab down: namespace removed")
			return err
		case <-tick.C:
		}
	}
}

func labStatus(args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("onramp lab status", flag.ContinueOnError)
	fset.SetOutput(stderr)
	data := fset.String("data", defaultLabData(), "lab data directory")
	if err := fset.Parse(args); err != nil {
		return err
	}
	lines, st, err := lab.Status(*data)
	if err != nil {
		return fmt.Errorf("lab status: %w", err)
	}
	if !st.Running {
		fmt.Fprintf(stdout, "lab not running (data %s)\n", *data)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAC\tFIRMWARE\tSTATE")
	for _, l := range lines {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Name, l.MAC, l.Firmware, l.State)
	}
	return tw.Flush()
}

func labDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("onramp lab down", flag.ContinueOnError)
	fset.SetOutput(stderr)
	data := fset.String("data", defaultLabData(), "lab data directory")
	nsName := fset.String("netns", lab.DefaultNetNS, "network namespace name (used when the data dir has no lab.json)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("lab down: needs root")
	}
	if err := lab.Down(ctx, *data, *nsName); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "lab down: stopped and removed")
	return nil
}
