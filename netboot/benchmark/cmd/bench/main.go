// Command bench runs Onramp's benchmark against Kea, tftpd-hpa and nginx
// (`make bench`): a table on stdout, JSON in build/bench/latest.json.
//
//	go run ./netboot/benchmark/cmd/bench [-quick] [-onramp build/bin/onramp] [-only dhcp,tftp,http,rack] [-reps 3] [-netns-prefix obb]
//
// It needs root (network namespaces) and the peers (Debian: kea-admin,
// kea-dhcp4-server, tftpd-hpa, nginx-light, curl, udhcpc, ipxe). Without
// -onramp it builds the onramp binary (plain `go build`, no GUI tags).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"onramp/netboot/benchmark"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "a 2–3 minute run: fewer rates, cases and machines")
	onramp := flag.String("onramp", "", "onramp binary (default: build one with go build)")
	out := flag.String("out", "build/bench/latest.json", "JSON report")
	only := flag.String("only", "", "comma-separated sections: dhcp,tftp,http,rack (default all)")
	lab := flag.String("lab", "build/bench/lab.json", "the virtual lab's results, shown when present")
	reps := flag.Int("reps", 0, "A/B rounds per TFTP and HTTP case (default 3, 1 with -quick)")
	onrampEnv := flag.String("onramp-env", "", "comma-separated VAR=value pairs for the onramp process, e.g. GOMAXPROCS=8")
	prefix := flag.String("netns-prefix", "obb", "prefix of the namespace and link names (≤ 3 characters)")
	timeout := flag.Duration("timeout", 15*time.Minute, "abort the run after this long")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := benchmark.Check(); err != nil {
		return err
	}
	bin := *onramp
	if bin == "" {
		dir, err := os.MkdirTemp("", "onramp-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "onramp")
		fmt.Fprintln(os.Stderr, "building onramp (go build) ...")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "onramp")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build onramp: %w", err)
		}
	} else if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	o := benchmark.Options{Onramp: bin, Quick: *quick, LabJSON: *lab, Log: os.Stderr, Reps: *reps, NetPrefix: *prefix}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	if *onrampEnv != "" {
		o.OnrampEnv = strings.Split(*onrampEnv, ",")
	}
	rep, err := benchmark.Run(ctx, o)
	if err != nil {
		return err
	}
	rep.WriteTable(os.Stdout)
	if err := rep.WriteJSON(*out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "\nJSON: %s\n", *out)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return nil
}
