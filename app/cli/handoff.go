package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"onramp/talos/handoff"
)

const handoffUsage = `Usage:
  onramp handoff open BUNDLE (--identity FILE | --passphrase-file FILE) --out DIR [--sha256 HEX]

Decrypts an Onramp handoff bundle on the fleet manager's side, checks every file against
the manifest's SHA-256, and writes the files (talosconfig, kubeconfig, secrets.yaml,
inventory.json, report.json, report.html, manifest.json) with mode 0600 into DIR
(created with mode 0700; it must be empty). FILE is an age identity file
(AGE-SECRET-KEY-1...) or an unencrypted ed25519/RSA SSH private key; or, for a bundle
made with a passphrase, a file whose first line is the passphrase. With --sha256 the
bundle must have the SHA-256 the technician's report and audit trail give for it.

`

// Handoff implements `onramp handoff open`.
func Handoff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "open" {
		fmt.Fprint(stderr, handoffUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return errors.New("handoff: the only subcommand is open")
	}
	fset := flag.NewFlagSet("onramp handoff open", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprint(fset.Output(), handoffUsage)
		fset.PrintDefaults()
	}
	identity := fset.String("identity", "", "age identity file or SSH private key")
	passFile := fset.String("passphrase-file", "", "file holding the bundle's passphrase (first line)")
	out := fset.String("out", "", "output directory (created with mode 0700, must be empty)")
	wantSum := fset.String("sha256", "", "expected SHA-256 of the bundle file (hex), from the site report")

	// The bundle may come before or after the flags.
	rest := args[1:]
	var positional []string
	for {
		if err := fset.Parse(rest); err != nil {
			return err
		}
		if fset.NArg() == 0 {
			break
		}
		positional = append(positional, fset.Arg(0))
		rest = fset.Args()[1:]
	}
	switch {
	case len(positional) != 1:
		fset.Usage()
		return fmt.Errorf("handoff open: give exactly one bundle file (got %d)", len(positional))
	case *out == "":
		fset.Usage()
		return errors.New("handoff open: --out is required")
	case (*identity == "") == (*passFile == ""):
		fset.Usage()
		return errors.New("handoff open: give --identity or --passphrase-file (one of them)")
	}

	var ids []age.Identity
	if *identity != "" {
		b, err := os.ReadFile(*identity)
		if err != nil {
			return fmt.Errorf("handoff open: %w", err)
		}
		if ids, err = handoff.ParseIdentities(b); err != nil {
			return fmt.Errorf("handoff open: %s: %w", *identity, err)
		}
	} else {
		b, err := os.ReadFile(*passFile)
		if err != nil {
			return fmt.Errorf("handoff open: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		id, err := handoff.PassphraseIdentity(strings.TrimRight(line, "\r"))
		if err != nil {
			return fmt.Errorf("handoff open: %w", err)
		}
		ids = []age.Identity{id}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	data, err := os.ReadFile(positional[0])
	if err != nil {
		return fmt.Errorf("handoff open: %w", err)
	}
	if w := strings.ToLower(strings.TrimSpace(*wantSum)); w != "" && w != handoff.Hash(data) {
		return fmt.Errorf("handoff open %s: its SHA-256 is %s, not the %s expected: this is not the bundle the report names", positional[0], handoff.Hash(data), w)
	}
	o, err := handoff.Open(bytes.NewReader(data), ids...)
	if err != nil {
		return fmt.Errorf("handoff open %s: %w", positional[0], err)
	}
	if err := o.Extract(*out); err != nil {
		return fmt.Errorf("handoff open: %w", err)
	}
	m := o.Manifest
	fmt.Fprintf(stdout, "Handoff bundle of cluster %s (ID %s", m.Cluster, m.ClusterID)
	if m.Site != "" {
		fmt.Fprintf(stdout, ", site %s", m.Site)
	}
	fmt.Fprintf(stdout, "), made %s by Onramp %s\n", m.Created.UTC().Format("2006-01-02 15:04:05 UTC"), m.Onramp)
	fmt.Fprintf(stdout, "Bundle SHA-256 %s\n", handoff.Hash(data))
	for _, e := range m.Files {
		fmt.Fprintf(stdout, "  %-16s %8d bytes  sha256 %s  ok\n", e.Name, e.Size, e.SHA256)
	}
	fmt.Fprintf(stdout, "All %d files match the manifest; written to %s (mode 0600).\n", len(m.Files), filepath.Clean(*out))
	if _, ok := o.File("kubeconfig"); !ok {
		fmt.Fprintln(stdout, "No kubeconfig in the bundle: make one with talosctl --talosconfig talosconfig kubeconfig.")
	}
	return nil
}
