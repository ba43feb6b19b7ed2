// Package cli holds Onramp's command-line verbs. Each verb is one function taking
// (ctx, args, stdout, stderr) so main.go only dispatches and tests call it directly.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"onramp/talos"
)

const talosGenUsage = `Usage:
  onramp talos gen --cluster NAME --endpoint URL --out DIR [--talos-version v1.14.1]
                   [--installer IMAGE] [--install-disk /dev/sda] [--site site.yaml] [--force]

Writes controlplane.yaml, worker.yaml and talosconfig (mode 0600) into DIR for scripting,
like talosctl gen config. The files hold the cluster's keys: this is an explicit export.
With --site the site file supplies the defaults and the flags given override it.

`

// Names of the files TalosGen writes.
const (
	ControlPlaneFile = "controlplane.yaml"
	WorkerFile       = "worker.yaml"
	TalosconfigFile  = "talosconfig"
)

// TalosGen implements `onramp talos gen`.
func TalosGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("onramp talos gen", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprint(fset.Output(), talosGenUsage)
		fset.PrintDefaults()
	}

	cluster := fset.String("cluster", "", "cluster name")
	endpoint := fset.String("endpoint", "", "Kubernetes API endpoint, https://host:6443")
	out := fset.String("out", "", "output directory (created with mode 0700)")
	talosVersion := fset.String("talos-version", talos.DefaultTalosVersion, "Talos version")
	installer := fset.String("installer", "", "installer image (default: the Image Factory SecureBoot installer)")
	installDisk := fset.String("install-disk", "/dev/sda", "install disk device path, used when the site has no installDisk")
	sitePath := fset.String("site", "", "site YAML file")
	force := fset.Bool("force", false, "overwrite existing files")

	if err := fset.Parse(args); err != nil {
		return err
	}

	if fset.NArg() > 0 {
		fset.Usage()

		return fmt.Errorf("talos gen: unexpected argument %q", fset.Arg(0))
	}

	set := map[string]bool{}
	fset.Visit(func(f *flag.Flag) { set[f.Name] = true })

	site := &talos.Site{}

	if *sitePath != "" {
		var err error
		if site, err = talos.LoadSite(*sitePath); err != nil {
			return fmt.Errorf("talos gen: %w", err)
		}
	}

	if set["cluster"] || site.Cluster == "" {
		site.Cluster = *cluster
	}

	if set["endpoint"] || site.Endpoint == "" {
		site.Endpoint = *endpoint
	}

	if set["talos-version"] || site.TalosVersion == "" {
		site.TalosVersion = *talosVersion
	}

	if set["installer"] {
		site.Installer = *installer
	}

	if set["install-disk"] || site.InstallDisk == nil {
		site.InstallDisk = &talos.DiskSelector{DevPath: *installDisk}
	}

	if *out == "" {
		fset.Usage()

		return errors.New("talos gen: --out is required")
	}

	if site.Cluster == "" || site.Endpoint == "" {
		fset.Usage()

		return errors.New("talos gen: --cluster and --endpoint are required (or a --site that sets them)")
	}

	gen, err := talos.NewGenerator(site)
	if err != nil {
		return fmt.Errorf("talos gen: %w", err)
	}

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("talos gen: %w", err)
	}

	files := []struct {
		name string
		make func() ([]byte, error)
	}{
		{ControlPlaneFile, func() ([]byte, error) { return gen.RoleConfig(talos.RoleControlPlane) }},
		{WorkerFile, func() ([]byte, error) { return gen.RoleConfig(talos.RoleWorker) }},
		{TalosconfigFile, gen.Talosconfig},
	}

	contents := make([][]byte, len(files))

	for i, f := range files {
		if contents[i], err = f.make(); err != nil {
			return fmt.Errorf("talos gen: %w", err)
		}
	}

	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("talos gen: create %s: %w", *out, err)
	}

	if !*force {
		for _, f := range files {
			path := filepath.Join(*out, f.name)
			if _, err := os.Lstat(path); err == nil {
				return fmt.Errorf("talos gen: %s exists (use --force to overwrite)", path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("talos gen: %w", err)
			}
		}
	}

	for i, f := range files {
		path := filepath.Join(*out, f.name)
		if err := writePrivate(path, contents[i], *force); err != nil {
			return fmt.Errorf("talos gen: %w", err)
		}

		fmt.Fprintf(stdout, "wrote %s\n", path)
	}

	return nil
}

// writePrivate writes data to path with mode 0600 through a temporary file, so a reader
// never sees a partial file. Without overwrite an existing path is an error.
func writePrivate(path string, data []byte, overwrite bool) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}

	defer func() {
		if rmErr := os.Remove(tmp.Name()); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("write %s: %w", path, rmErr)
		}
	}()

	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close() //nolint:errcheck // the chmod error is the one to report

		return fmt.Errorf("write %s: %w", path, err)
	}

	if _, err := tmp.Write(data); err != nil {
		tmp.Close() //nolint:errcheck // the write error is the one to report

		return fmt.Errorf("write %s: %w", path, err)
	}

	if err := tmp.Sync(); err != nil {
		tmp.Close() //nolint:errcheck // the sync error is the one to report

		return fmt.Errorf("write %s: %w", path, err)
	}

	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}

	if overwrite {
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}

		return nil
	}

	// A hard link fails if path exists: no overwrite even if it appeared meanwhile.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: exists (use --force to overwrite)", path)
		}

		return fmt.Errorf("write %s: %w", path, err)
	}

	return nil
}
